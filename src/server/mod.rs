//! The HTTP/JSON API over the store (feature `server`): [`router`], an axum
//! [`Router`] a Rust chatbot mounts in its own axum app, and [`run`], the
//! standalone server of `sessionstore serve`.
//!
//! Every call of the store runs on tokio's blocking pool (through
//! [`AsyncSessionStore`]): no async worker waits on a commit's sync or a
//! read. Errors are JSON `{"error": {"kind", "message"}}` (see
//! [`ErrorDetail`]); the routes are documented in `GET /v1/openapi.json`,
//! built from the handlers themselves.
//!
//! ```
//! use sessionstore::server::{router, ServerConfig};
//! use sessionstore::SessionStore;
//! # let dir = tempfile::tempdir().unwrap();
//! let store = SessionStore::open(dir.path().join("s.redb"))?;
//! // The chatbot's own routes, with the store's API beside them.
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my chatbot" }))
//!     .merge(router(store, ServerConfig::default()));
//! # drop(app);
//! # Ok::<(), sessionstore::Error>(())
//! ```

mod auth;
mod errors;
mod export;
mod extract;
mod metrics;
mod routes;
mod session_json;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Caller, Tokens};
pub use errors::{ApiError, ErrorBody, ErrorDetail};

use crate::{AsyncSessionStore, Error, Result, SessionStore};

/// How a server built by [`router`] behaves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The bearer tokens accepted; `None`: no token needed, every request
    /// acts as an admin (for loopback and the owner-only local socket:
    /// [`run`] refuses any other address without tokens).
    pub tokens: Option<Tokens>,
    /// Longest time a request of the session, message and user routes may
    /// take before it is answered 503 `timeout` (default 30 s). The admin
    /// routes (backup, compact, export...) have no limit. A write whose
    /// answer timed out may still commit: retry appends with the same
    /// `Idempotency-Key`.
    pub request_timeout: Duration,
    /// Most requests handled at once; more wait (default 256).
    pub max_concurrent_requests: usize,
    /// Largest request body, in bytes; larger bodies get 413. `None`
    /// (default): the store's `max_content_bytes` plus 1 MiB for the rest
    /// of the request.
    pub max_body_bytes: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tokens: None,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 256,
            max_body_bytes: None,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    store: AsyncSessionStore,
    metrics: Arc<metrics::Metrics>,
    /// The OpenAPI document as JSON, set once the routes are built.
    openapi: Arc<OnceLock<String>>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessionstore",
        description = "Chat sessions, their messages and carry-forward context. Errors are \
                       `{\"error\": {\"kind\", \"message\"}}`; with tokens, every route but \
                       /v1/health and /v1/openapi.json needs `Authorization: Bearer <token>`."
    ),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

/// The routes open to anyone.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::health))
        .routes(routes!(routes::openapi))
}

/// The routes of sessions, messages and users.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::create_session))
        .routes(routes!(routes::get_session, routes::delete_session))
        .routes(routes!(routes::expire_session))
        .routes(routes!(routes::fork_session))
        .routes(routes!(routes::update_context))
        .routes(routes!(routes::append_messages, routes::list_messages))
        .routes(routes!(routes::pop_last_message))
        .routes(routes!(routes::get_message))
        .routes(routes!(routes::user_sessions))
        .routes(routes!(routes::search))
        .routes(routes!(routes::erase_user))
}

/// The operator's routes: admin tokens only, no time limit.
fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(routes::admin_expire))
        .routes(routes!(routes::admin_purge))
        .routes(routes!(routes::admin_stats))
        .routes(routes!(routes::admin_session_info))
        .routes(routes!(routes::admin_check))
        .routes(routes!(routes::admin_backup))
        .routes(routes!(routes::admin_compact))
        .routes(routes!(routes::admin_snapshot))
        .routes(routes!(routes::metrics))
}

/// The OpenAPI document of the API, as `GET /v1/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let routes = public_routes().merge(api_routes()).merge(admin_routes());
    with_common_errors(routes.into_openapi())
}

/// The errors any route may answer, whatever it does: a request that
/// does not parse, a missing or refused token, a body too large or not
/// JSON, a store whose writer stopped.
const COMMON_ERRORS: [(&str, &str); 7] = [
    (
        "400",
        "The request does not parse: its JSON, a path or query parameter",
    ),
    ("401", "No valid bearer token (servers with tokens)"),
    ("403", "The token may not do this"),
    ("413", "The body is over the size limit"),
    ("415", "A body that is not application/json"),
    ("422", "A value breaks a rule; `field` names it"),
    (
        "503",
        "The store's writer has stopped, its database cannot be reached, or the request timed out",
    ),
];

/// Documents [`COMMON_ERRORS`] on every operation that does not already.
fn with_common_errors(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
            &mut item.put,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, description) in COMMON_ERRORS {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| {
                        let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody")));
                        ResponseBuilder::new()
                            .description(description)
                            .content("application/json", body.build())
                            .build()
                            .into()
                    });
            }
        }
    }
    document
}

/// Answers 503 `timeout` when the request takes longer than the limit.
async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("not answered within {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// The API over `store`, as a router to serve or to merge into an app.
pub fn router(store: SessionStore, config: ServerConfig) -> Router {
    let body_limit = config
        .max_body_bytes
        .unwrap_or_else(|| store.options().max_content_bytes.saturating_add(1 << 20));
    let state = AppState {
        store: AsyncSessionStore::new(store),
        metrics: Arc::default(),
        openapi: Arc::default(),
    };
    let tokens = config.tokens.map(Arc::new);
    let protected = api_routes()
        .route_layer(from_fn_with_state(config.request_timeout, deadline))
        .merge(admin_routes())
        .route_layer(from_fn_with_state(tokens, auth::authenticate));
    let (router, document) = public_routes().merge(protected).split_for_parts();
    let document = with_common_errors(document);
    let _ = state
        .openapi
        .set(document.to_json().unwrap_or_else(|_| "{}".to_owned()));
    router
        .fallback(errors::no_route)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            config.max_concurrent_requests.max(1),
        ))
        .layer(from_fn_with_state(state.metrics.clone(), metrics::track))
        .with_state(state)
}

/// Serves `router(store, config)` on `listener` until `shutdown` resolves,
/// then stops accepting and finishes the requests in flight.
pub async fn serve(
    store: SessionStore,
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store, config))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// The addresses `listen` names (`127.0.0.1:8080`, `localhost:8080`,
/// `[::]:8080`...); refused when one is not loopback and no token is
/// given.
pub fn resolve_listen(listen: &str, config: &ServerConfig) -> Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    let invalid = |why: String| Error::invalid("listen", why);
    let addresses: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| invalid(format!("{listen:?} is not an address and port: {e}")))?
        .collect();
    if addresses.is_empty() {
        return Err(invalid(format!("{listen:?} names no address")));
    }
    let open = config.tokens.as_ref().is_none_or(Tokens::is_empty);
    if let Some(outside) = addresses.iter().find(|a| !a.ip().is_loopback()).filter(|_| open) {
        return Err(invalid(format!(
            "{outside} is not a loopback address: without tokens (--tokens FILE) the server \
             listens only on 127.0.0.1 or ::1"
        )));
    }
    Ok(addresses)
}

/// `sessionstore serve`: serves the API over `store` on `listen` until
/// SIGINT or SIGTERM, finishes the requests in flight, then drops the store
/// (which checkpoints and closes it). Logs each request through `tracing`.
pub fn run(store: SessionStore, listen: &str, config: ServerConfig) -> Result<()> {
    let addresses = resolve_listen(listen, &config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sessionstore-server")
        .build()
        .map_err(|e| Error::io("start the server's runtime for", store.path(), e))?;
    let path = store.path().to_path_buf();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addresses.as_slice())
            .await
            .map_err(|e| Error::io("listen on", std::path::Path::new(listen), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("listen on", std::path::Path::new(listen), e))?;
        tracing::info!(address = %local, store = %path.display(), "serving");
        serve(store, listener, config, shutdown_signal())
            .await
            .map_err(|e| Error::io("serve", &path, e))?;
        tracing::info!("stopped: requests finished, store closing");
        Ok(())
    })
}
