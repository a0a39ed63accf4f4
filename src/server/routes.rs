//! The handlers of the API, one per route, each documented for the OpenAPI
//! document by its `#[utoipa::path]`. Each calls the async store as its
//! [`Caller`]: an admin sees every session, a user token only its user's.

use std::io::ErrorKind;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Caller;
use super::errors::{ApiError, ErrorBody};
use super::extract::{Json, Path, Query};
use super::session_json;
use super::AppState;
use crate::{
    AsyncSessionStore, AsyncUserView, Error, Message, NewMessage, Role, SearchCursor, SearchHit, Session,
    SessionCursor, SessionSummary,
};

type Answer<T> = std::result::Result<T, ApiError>;

/// The store as the caller may see it.
enum Scope {
    All(AsyncSessionStore),
    User(AsyncUserView),
}

fn scope(state: &AppState, caller: &Caller) -> Scope {
    match caller {
        Caller::Admin => Scope::All(state.store.clone()),
        Caller::User(user) => Scope::User(state.store.for_user(user.clone())),
    }
}

/// Calls the method of that name on the caller's scope.
macro_rules! as_caller {
    ($scope:expr, $method:ident($($arg:expr),*)) => {
        match $scope {
            Scope::All(store) => store.$method($($arg),*).await,
            Scope::User(view) => view.$method($($arg),*).await,
        }
    };
}

/// The most messages or sessions one page holds.
const MAX_LIMIT: u64 = 10_000;

fn limit(limit: Option<u64>, default: u64) -> Answer<u64> {
    match limit.unwrap_or(default) {
        0 => Err(ApiError::invalid("limit", "a page holds at least one item")),
        n if n > MAX_LIMIT => Err(ApiError::invalid(
            "limit",
            format!("{n} is over the most, {MAX_LIMIT}"),
        )),
        n => Ok(n),
    }
}

// ---- health -------------------------------------------------------------

/// Whether the server answers.
#[utoipa::path(get, path = "/v1/health", tag = "health",
    responses((status = 200, description = "The server answers", body = Value)))]
pub async fn health() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document of this API", body = Value)))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    let document = state.openapi.get().map(String::as_str).unwrap_or("{}").to_owned();
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

// ---- sessions -----------------------------------------------------------

/// The body of `POST /v1/sessions`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// The owner; anonymous when left out. A user token may only give its
    /// own user (or leave it out).
    #[serde(default)]
    pub user_id: Option<String>,
}

/// Creates a session; answers it, with no messages yet.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = NewSession,
    responses(
        (status = 201, description = "The new session", body = Value),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 403, description = "A user token naming another user", body = ErrorBody),
        (status = 422, description = "A field of the wrong type", body = ErrorBody)))]
pub async fn create_session(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<NewSession>,
) -> Answer<(StatusCode, axum::Json<Session>)> {
    let id = match (&caller, body.user_id) {
        (Caller::Admin, user) => state.store.create_session(user).await?,
        (Caller::User(own), user) => {
            if let Some(user) = user {
                caller.may_act_for(&user)?;
            }
            state.store.for_user(own.clone()).create_session().await?
        }
    };
    let session =
        as_caller!(scope(&state, &caller), get_session(id))?.ok_or_else(ApiError::session_not_found)?;
    Ok((StatusCode::CREATED, axum::Json(session)))
}

/// `?last=N` of `GET /v1/sessions/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only the last N messages (reads only those).
    pub last: Option<u64>,
}

/// An active session with its messages (or its last N).
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session"), SessionQuery),
    responses(
        (status = 200, description = "The session and its messages", body = Value),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 404, description = "Missing, expired or another user's", body = ErrorBody)))]
pub async fn get_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<SessionQuery>,
) -> Answer<Response> {
    let scope = scope(&state, &caller);
    let Some(last) = query.last else {
        let session = as_caller!(scope, get_session(id))?.ok_or_else(ApiError::session_not_found)?;
        return Ok(session_json::response(&session));
    };
    let info = as_caller!(&scope, session_info(id))?
        .filter(|info| !info.is_expired())
        .ok_or_else(ApiError::session_not_found)?;
    let messages =
        as_caller!(scope, get_recent_messages(id, last))?.ok_or_else(ApiError::session_not_found)?;
    Ok(session_json::response(&Session { info, messages }))
}

/// Deletes a session, expired or not, with its messages.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session")),
    responses(
        (status = 200, description = "How many messages it held", body = Value),
        (status = 404, description = "Missing or another user's", body = ErrorBody)))]
pub async fn delete_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Answer<axum::Json<Value>> {
    let messages = as_caller!(scope(&state, &caller), delete_session(id))?;
    Ok(axum::Json(json!({"deleted_messages": messages})))
}

/// Expires a session (its data stays until purged).
#[utoipa::path(post, path = "/v1/sessions/{id}/expire", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session")),
    responses(
        (status = 200, description = "Whether it was active until now", body = Value),
        (status = 404, description = "Missing or another user's", body = ErrorBody)))]
pub async fn expire_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Answer<axum::Json<Value>> {
    let expired = as_caller!(scope(&state, &caller), expire_session(id))?;
    Ok(axum::Json(json!({"expired": expired})))
}

/// Where a fork ends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkAt {
    /// The fork holds the messages before this seq (0: none of them).
    pub at_seq: u64,
}

/// Branches a session: a new session of the same user, with its context,
/// holding copies of the messages before `at_seq` (see
/// `SessionStore::fork_session`); answers the new session.
#[utoipa::path(post, path = "/v1/sessions/{id}/fork", tag = "sessions", request_body = ForkAt,
    params(("id" = Uuid, Path, description = "The session to branch")),
    responses(
        (status = 201, description = "The new session", body = Value),
        (status = 404, description = "Missing, expired or another user's", body = ErrorBody),
        (status = 422, description = "at_seq past the session's end", body = ErrorBody)))]
pub async fn fork_session(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<ForkAt>,
) -> Answer<(StatusCode, axum::Json<Session>)> {
    let scope = scope(&state, &caller);
    let fork = as_caller!(&scope, fork_session(id, body.at_seq))?;
    let session = as_caller!(scope, get_session(fork))?.ok_or_else(ApiError::session_not_found)?;
    Ok((StatusCode::CREATED, axum::Json(session)))
}

/// Shallow-merges a JSON object into the session's context; answers the
/// merged context.
#[utoipa::path(patch, path = "/v1/sessions/{id}/context", tag = "sessions",
    params(("id" = Uuid, Path, description = "The session")),
    request_body(content = Object, description = "The keys to set"),
    responses(
        (status = 200, description = "The merged context", body = Value),
        (status = 404, description = "Missing, expired or another user's", body = ErrorBody),
        (status = 422, description = "Not a JSON object", body = ErrorBody)))]
pub async fn update_context(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(update): Json<Box<RawValue>>,
) -> Answer<Response> {
    let scope = scope(&state, &caller);
    as_caller!(&scope, update_context(id, update.get().to_owned()))?;
    let info = as_caller!(scope, session_info(id))?.ok_or_else(ApiError::session_not_found)?;
    let context = info
        .context
        .map_or_else(|| "null".to_owned(), |c| c.as_str().to_owned());
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"context\":{context}}}"),
    )
        .into_response())
}

// ---- messages -----------------------------------------------------------

/// Who wrote a message.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// The person chatting.
    User,
    /// The chatbot.
    Assistant,
    /// Instructions to the chatbot.
    System,
}

impl From<RoleName> for Role {
    fn from(role: RoleName) -> Self {
        match role {
            RoleName::User => Role::User,
            RoleName::Assistant => Role::Assistant,
            RoleName::System => Role::System,
        }
    }
}

/// A message to append.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageInput {
    /// Who wrote it.
    pub role: RoleName,
    /// The text.
    pub content: String,
    /// The query plan, a JSON object, kept exactly as given.
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub query_plan: Option<Box<RawValue>>,
    /// The candidate set, a JSON object, kept exactly as given.
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub candidate_set: Option<Box<RawValue>>,
}

/// The body of `POST /v1/sessions/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// The messages, in order: appended in one commit, all or none.
    pub messages: Vec<MessageInput>,
    /// Append only if the first message would get this seq; else 409 with
    /// the actual next seq.
    #[serde(default)]
    pub expected_next_seq: Option<u64>,
}

/// The ids an append gave.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppendAnswer {
    /// The global ids of the messages, in order.
    pub ids: Vec<u64>,
}

fn new_messages(inputs: Vec<MessageInput>) -> Answer<Vec<NewMessage>> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            let field = |name: &str| format!("messages[{i}].{name}");
            let mut message = NewMessage::new(input.role.into(), input.content);
            if let Some(plan) = input.query_plan {
                message = message
                    .with_query_plan(plan.get())
                    .map_err(|e| ApiError::from(e).with_field(field("query_plan")))?;
            }
            if let Some(set) = input.candidate_set {
                message = message
                    .with_candidate_set(set.get())
                    .map_err(|e| ApiError::from(e).with_field(field("candidate_set")))?;
            }
            Ok(message)
        })
        .collect()
}

/// Appends messages in one commit. With an `Idempotency-Key` header, a
/// retry with the same key appends nothing and answers the first ids.
#[utoipa::path(post, path = "/v1/sessions/{id}/messages", tag = "messages",
    params(("id" = Uuid, Path, description = "The session"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 bytes; a retry with the same key answers the first attempt's ids")),
    request_body = AppendBody,
    responses(
        (status = 201, description = "The ids of the messages", body = AppendAnswer),
        (status = 404, description = "Missing, expired or another user's", body = ErrorBody),
        (status = 409, description = "expected_next_seq is not the next seq", body = ErrorBody),
        (status = 413, description = "A content over the size limit", body = ErrorBody),
        (status = 422, description = "An invalid field", body = ErrorBody)))]
pub async fn append_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<AppendBody>,
) -> Answer<(StatusCode, axum::Json<AppendAnswer>)> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::invalid("idempotency_key", "not visible ASCII"))?
                .to_owned(),
        ),
    };
    let messages = new_messages(body.messages)?;
    let scope = scope(&state, &caller);
    let ids = match (key, body.expected_next_seq) {
        (Some(key), expected) => as_caller!(scope, add_messages_idempotent(id, key, expected, messages))?,
        (None, Some(expected)) => as_caller!(scope, add_messages_if(id, expected, messages))?,
        (None, None) => as_caller!(scope, add_messages(id, messages))?,
    };
    Ok((StatusCode::CREATED, axum::Json(AppendAnswer { ids })))
}

/// The page asked of `GET /v1/sessions/{id}/messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Messages with a seq above this one.
    pub after: Option<u64>,
    /// Messages with a seq below this one (the nearest).
    pub before: Option<u64>,
    /// At most this many (default 100, at most 10000).
    pub limit: Option<u64>,
}

/// A page of a session's messages, oldest first: after a seq, before one,
/// or from the start.
#[utoipa::path(get, path = "/v1/sessions/{id}/messages", tag = "messages",
    params(("id" = Uuid, Path, description = "The session"), MessagesQuery),
    responses(
        (status = 200, description = "The messages", body = Value),
        (status = 404, description = "Missing, expired or another user's", body = ErrorBody),
        (status = 422, description = "Both after and before, or a bad limit", body = ErrorBody)))]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(query): Query<MessagesQuery>,
) -> Answer<axum::Json<Value>> {
    let limit = limit(query.limit, 100)?;
    let scope = scope(&state, &caller);
    let messages = match (query.after, query.before) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("before", "give after or before, not both")),
        (Some(after), None) => as_caller!(scope, messages_after(id, after, limit))?,
        (None, Some(before)) => as_caller!(scope, messages_before(id, before, limit))?,
        (None, None) => as_caller!(scope, messages_from(id, 0, limit))?,
    }
    .ok_or_else(ApiError::session_not_found)?;
    Ok(axum::Json(json!({ "messages": messages })))
}

/// Removes the session's last message (undo) and answers it; `null` when
/// the session has none.
#[utoipa::path(delete, path = "/v1/sessions/{id}/messages/last", tag = "messages",
    params(("id" = Uuid, Path, description = "The session")),
    responses(
        (status = 200, description = "The removed message, or null", body = Value),
        (status = 404, description = "Missing, expired or another user's", body = ErrorBody)))]
pub async fn pop_last_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Answer<axum::Json<Value>> {
    let message: Option<Message> = as_caller!(scope(&state, &caller), pop_last_message(id))?;
    Ok(axum::Json(json!({ "message": message })))
}

/// A message by its global id, with its session.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = u64, Path, description = "The message's global id")),
    responses(
        (status = 200, description = "The message and its session", body = Value),
        (status = 404, description = "No such message (or another user's)", body = ErrorBody)))]
pub async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Answer<axum::Json<Value>> {
    let (session, message) =
        as_caller!(scope(&state, &caller), get_message(id))?.ok_or_else(ApiError::message_not_found)?;
    Ok(axum::Json(json!({ "session_id": session, "message": message })))
}

// ---- users --------------------------------------------------------------

/// The page asked of `GET /v1/users/{user}/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionsQuery {
    /// Also list expired sessions.
    #[serde(default)]
    pub include_expired: bool,
    /// At most this many (default 20, at most 10000).
    pub limit: Option<u64>,
    /// Where to start: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A user's sessions for a sidebar, most recent first: title, message
/// count, last activity, and where the next page starts.
#[utoipa::path(get, path = "/v1/users/{user}/sessions", tag = "users",
    params(("user" = String, Path, description = "The user"), SessionsQuery),
    responses(
        (status = 200, description = "One page of sessions and the next cursor", body = Value),
        (status = 403, description = "A user token for another user", body = ErrorBody),
        (status = 422, description = "A bad cursor or limit", body = ErrorBody)))]
pub async fn user_sessions(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    Query(query): Query<SessionsQuery>,
) -> Answer<axum::Json<SessionsAnswer>> {
    caller.may_act_for(&user)?;
    let limit = limit(query.limit, 20)? as usize;
    let cursor = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<SessionCursor>()?),
    };
    let page = state
        .store
        .user_sessions_page(user, query.include_expired, cursor, limit)
        .await?;
    Ok(axum::Json(SessionsAnswer {
        sessions: page.sessions,
        next_cursor: page.next.map(|next| next.to_string()),
    }))
}

/// One page of a user's sessions, serialised as it is (no `Value` built).
#[derive(Debug, Serialize)]
pub struct SessionsAnswer {
    /// The sessions, the latest activity first.
    pub sessions: Vec<SessionSummary>,
    /// Where the next page starts; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The search asked of `GET /v1/users/{user}/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The words to search for: runs of letters and digits, matched whole
    /// and without case (at most 1024 bytes).
    #[serde(default)]
    pub q: String,
    /// At most this many hits (default 10, at most 1000).
    pub limit: Option<u64>,
    /// Where to start: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of search hits.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchAnswer {
    /// The hits, best first.
    pub hits: Vec<SearchHit>,
    /// Where the next page starts; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Full-text search over a user's messages (active sessions), ranked by
/// BM25: session, message, seq, score and a snippet for each hit.
#[utoipa::path(get, path = "/v1/users/{user}/search", tag = "users",
    params(("user" = String, Path, description = "The user"), SearchQuery),
    responses(
        (status = 200, description = "One page of hits and the next cursor", body = SearchAnswer),
        (status = 400, description = "A query string that does not parse", body = ErrorBody),
        (status = 403, description = "A user token for another user", body = ErrorBody),
        (status = 422, description = "No word in q, a q too long, a bad cursor or limit", body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
    Query(query): Query<SearchQuery>,
) -> Answer<axum::Json<SearchAnswer>> {
    caller.may_act_for(&user)?;
    let limit = usize::try_from(query.limit.unwrap_or(10)).unwrap_or(usize::MAX);
    let cursor = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<SearchCursor>()?),
    };
    let page = state
        .store
        .search(user, query.q, cursor, limit)
        .await
        .map_err(|error| match error {
            // The library's `query` is this route's `q` (the message stays
            // the library's, as the CLI prints it through the socket).
            Error::InvalidInput { what: "query", .. } => ApiError::from(error).with_field("q"),
            other => other.into(),
        })?;
    Ok(axum::Json(SearchAnswer {
        hits: page.hits,
        next_cursor: page.next.map(|next| next.to_string()),
    }))
}

/// Deletes every session of a user, with their messages (erasure; admin).
#[utoipa::path(delete, path = "/v1/users/{user}", tag = "users",
    params(("user" = String, Path, description = "The user")),
    responses(
        (status = 200, description = "What was deleted", body = Value),
        (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn erase_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> Answer<axum::Json<Value>> {
    caller.admin()?;
    let erased = state.store.erase_user(user).await?;
    Ok(axum::Json(
        json!({"sessions": erased.sessions, "messages": erased.messages}),
    ))
}

// ---- admin --------------------------------------------------------------

/// The body of `POST /v1/admin/expire`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpireBody {
    /// Expire every active session not updated for this many seconds.
    pub max_age_seconds: u64,
}

/// Expires every session idle too long (the nightly cleanup).
#[utoipa::path(post, path = "/v1/admin/expire", tag = "admin", request_body = ExpireBody,
    responses(
        (status = 200, description = "How many were expired", body = Value),
        (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn admin_expire(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ExpireBody>,
) -> Answer<axum::Json<Value>> {
    caller.admin()?;
    let expired = state
        .store
        .expire_old_sessions(Duration::from_secs(body.max_age_seconds))
        .await?;
    Ok(axum::Json(json!({"expired": expired})))
}

/// The body of `POST /v1/admin/purge`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeBody {
    /// Delete the sessions expired more than this many seconds ago.
    pub older_than_seconds: u64,
}

/// Deletes, with their messages, the sessions expired long ago.
#[utoipa::path(post, path = "/v1/admin/purge", tag = "admin", request_body = PurgeBody,
    responses(
        (status = 200, description = "How many were deleted", body = Value),
        (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn admin_purge(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<PurgeBody>,
) -> Answer<axum::Json<Value>> {
    caller.admin()?;
    let purged = state
        .store
        .purge_expired(Duration::from_secs(body.older_than_seconds))
        .await?;
    Ok(axum::Json(json!({"purged": purged})))
}

/// A session's own fields, expired or not (`GET /v1/sessions/{id}` answers
/// only active sessions): why a session cannot be used, for an operator.
#[utoipa::path(get, path = "/v1/admin/sessions/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "The session")),
    responses(
        (status = 200, description = "The session's fields, without its messages", body = Value),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody)))]
pub async fn admin_session_info(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Answer<axum::Json<crate::SessionInfo>> {
    caller.admin()?;
    let info = state.store.run(move |store| store.session_info(id)).await?;
    info.map(axum::Json).ok_or_else(ApiError::session_not_found)
}

/// Counts of sessions and messages, and the files' sizes.
#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin",
    responses(
        (status = 200, description = "The counts", body = Value),
        (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn admin_stats(State(state): State<AppState>, caller: Caller) -> Answer<axum::Json<crate::Stats>> {
    caller.admin()?;
    Ok(axum::Json(state.store.stats().await?))
}

/// Checks every page's checksum and every rule of the data model.
#[utoipa::path(post, path = "/v1/admin/check", tag = "admin",
    responses(
        (status = 200, description = "What was read and every problem found", body = Value),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "An export is running", body = ErrorBody)))]
pub async fn admin_check(State(state): State<AppState>, caller: Caller) -> Answer<axum::Json<Value>> {
    caller.admin()?;
    let report = state.store.check().await?;
    Ok(axum::Json(json!({
        "clean": report.is_clean(),
        "sessions": report.sessions,
        "messages": report.messages,
        "problems": report.problems,
    })))
}

/// The body of `POST /v1/admin/backup`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupBody {
    /// Where the server writes the copy, a path on its machine; refused if
    /// it exists.
    pub path: String,
}

/// Writes a consistent copy of the store to a new file on the server.
#[utoipa::path(post, path = "/v1/admin/backup", tag = "admin", request_body = BackupBody,
    responses(
        (status = 201, description = "The copy is written", body = Value),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 422, description = "The destination exists, or its folder is missing or not writable", body = ErrorBody)))]
pub async fn admin_backup(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<BackupBody>,
) -> Answer<(StatusCode, axum::Json<Value>)> {
    caller.admin()?;
    if body.path.is_empty() {
        return Err(ApiError::invalid("path", "empty"));
    }
    state
        .store
        .backup_to(body.path.clone().into())
        .await
        .map_err(|error| match &error {
            // A folder that is missing or not writable: the path is at fault.
            Error::Io { source, .. }
                if matches!(
                    source.kind(),
                    ErrorKind::NotFound
                        | ErrorKind::PermissionDenied
                        | ErrorKind::NotADirectory
                        | ErrorKind::IsADirectory
                ) =>
            {
                ApiError::invalid("path", &error)
            }
            _ => ApiError::from(error),
        })?;
    Ok((StatusCode::CREATED, axum::Json(json!({"path": body.path}))))
}

/// Rewrites the file to hold only live data.
#[utoipa::path(post, path = "/v1/admin/compact", tag = "admin",
    responses(
        (status = 200, description = "The file's size before and after", body = Value),
        (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn admin_compact(State(state): State<AppState>, caller: Caller) -> Answer<axum::Json<Value>> {
    caller.admin()?;
    let report = state.store.compact().await?;
    Ok(axum::Json(
        json!({"before": report.before, "after": report.after}),
    ))
}

/// Every session and its messages from one consistent snapshot, streamed as
/// JSON lines: `{"session": {...}}`, then `{"message": {...}}` for each
/// of its messages; `{"extra_row": {...}}` for each row of a converted
/// SQLite file's other tables; last `{"end": {"sessions": N, "messages":
/// N, "next_message_id": N}}` (or `{"error": {...}}` if the read failed
/// midway).
#[utoipa::path(get, path = "/v1/admin/snapshot", tag = "admin",
    responses(
        (status = 200, description = "JSON lines", content_type = "application/x-ndjson", body = String),
        (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn admin_snapshot(State(state): State<AppState>, caller: Caller) -> Answer<Response> {
    caller.admin()?;
    let snapshot = state.store.run(|store| store.snapshot()).await?;
    let (lines, receiver) = tokio::sync::mpsc::channel::<String>(64);
    tokio::task::spawn_blocking(move || {
        let mut counts = (0u64, 0u64);
        let result = super::export::write_lines(&snapshot, &mut counts, &mut |line| {
            lines.blocking_send(line).is_ok()
        })
        .and_then(|()| snapshot.next_message_id());
        let last = match result {
            Ok(next_message_id) => json!({"end": {
                "sessions": counts.0,
                "messages": counts.1,
                "next_message_id": next_message_id,
            }}),
            Err(e) => json!({"error": {"kind": "internal", "message": e.to_string()}}),
        };
        let _ = lines.blocking_send(format!("{last}\n"));
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let line = receiver.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(line), receiver))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The Prometheus metrics: requests and latency by route and status, the
/// store's counts, its commits, batch sizes, checkpoints and message cache
/// hits and misses.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
        (status = 403, description = "Not an admin token", body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Answer<Response> {
    caller.admin()?;
    let stats = state.store.stats().await?;
    let counters = state.store.blocking().counters();
    let text = state.metrics.render(&stats, &counters);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
