//! Every error the API answers, as JSON `{"error": {"kind", "message"}}`
//! with its status: the library's errors, axum's own rejections (bad JSON,
//! a path or query that does not parse), unknown routes and methods.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Error;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

/// The JSON body of every error answer: `{"error": {...}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for a program (`kind`) and for a person (`message`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// One of `bad_request`, `invalid_input`, `not_found`, `no_route`,
    /// `method_not_allowed`, `unsupported_media_type`, `payload_too_large`,
    /// `unauthorized`, `forbidden`, `seq_conflict`, `conflict`, `timeout`,
    /// `unavailable`, `internal`.
    pub kind: &'static str,
    /// What and why, in a sentence.
    pub message: String,
    /// The input at fault (`content`, `cursor`, `messages[0].role`, ...),
    /// when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `seq_conflict`: the seq the next message would get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_next_seq: Option<u64>,
}

impl ApiError {
    /// An error of `status` and `kind` saying `message`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: ErrorDetail {
                    kind,
                    message: message.into(),
                    field: None,
                    actual_next_seq: None,
                },
            },
        }
    }

    /// Names the input at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.error.field = Some(field.into());
        self
    }

    /// 422: a value breaks a rule (`field` says which).
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("invalid {field}: {why}"),
        )
        .with_field(field)
    }

    /// 404 for a session that is missing, expired or another user's: the
    /// same answer for all three.
    pub fn session_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such session")
    }

    /// 404 for a message that is missing or another user's.
    pub fn message_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such message")
    }

    /// 401: no valid token.
    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: a valid token that may not do this.
    pub fn forbidden(message: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::SessionNotFound(_) => Self::session_not_found(),
            Error::SeqConflict { actual, .. } => {
                let mut conflict = Self::new(StatusCode::CONFLICT, "seq_conflict", message);
                conflict.body.error.actual_next_seq = Some(actual);
                conflict
            }
            // A message's content is refused only for its size.
            Error::InvalidInput { what: "content", .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message).with_field("content")
            }
            Error::InvalidInput { what, .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message).with_field(what)
            }
            Error::SnapshotOpen { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            Error::WriterStopped | Error::BatchAborted | Error::InUse { .. } | Error::Unavailable { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            other => {
                tracing::error!(error = %other, "the store failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", other.to_string())
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_input",
            _ => "bad_request",
        };
        Self::new(status, kind, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", rejection.body_text())
    }
}

/// The answer to a path no route has.
pub async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route")
}

/// The answer to a method the path's route does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take this method",
    )
}
