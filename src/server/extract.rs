//! axum's extractors, with their rejections answered as [`ApiError`]s: a
//! body that is not JSON, a path id that is not a UUID, a query that does
//! not parse all get the API's JSON error shape.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;

use super::errors::ApiError;

/// A JSON body (axum's [`axum::Json`], rejected as [`ApiError`]).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// Path parameters (axum's [`axum::extract::Path`], rejected as [`ApiError`]).
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters (axum's [`axum::extract::Query`], rejected as [`ApiError`]).
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
