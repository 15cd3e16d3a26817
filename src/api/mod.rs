//! The local HTTP/JSON API (axum): the prototype's endpoints, direct
//! messages, peers, live events over Server-Sent Events, the OpenAPI document
//! and the embedded web page. Every handler is a thin call on [`Node`].
//!
//! Run a node with `--api 127.0.0.1:8080`; docs/api.md has a curl example per endpoint.

mod error;
mod guard;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

use crate::event::{Event, MemberSummary, PeerSummary};
use crate::node::{InboxPage, Node};
use crate::store::Cursor;
pub use error::ApiError;

/// Largest request body accepted; a message itself is limited to 64 KiB (413 beyond).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Inbox items returned when `?limit=` is not given.
pub const DEFAULT_INBOX_LIMIT: usize = 1000;
/// Largest `?limit=` accepted.
pub const MAX_INBOX_LIMIT: usize = 10_000;

/// The OpenAPI document, as shipped in docs/openapi.yaml.
pub const OPENAPI_YAML: &str = include_str!("../../docs/openapi.yaml");
/// The single-page web UI.
const INDEX_HTML: &str = include_str!("index.html");

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    node: Node,
    /// `Some` when requests must carry `Authorization: Bearer <token>`.
    token: Option<Arc<str>>,
    /// Host header values accepted (DNS-rebinding protection); empty: any.
    hosts: Arc<[String]>,
    /// Ends the SSE streams when the server shuts down.
    shutdown: CancellationToken,
}

impl ApiState {
    /// State for a server bound at `addr`.
    pub fn new(node: Node, addr: SocketAddr, token: Option<String>, shutdown: CancellationToken) -> Self {
        Self {
            node,
            token: token.map(Into::into),
            hosts: guard::allowed_hosts(addr).into(),
            shutdown,
        }
    }

    fn check_user(&self, user: &str) -> Result<(), ApiError> {
        if user.to_lowercase() == self.node.name().to_lowercase() {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown user {user:?}: this node is {:?}", self.node.name()),
            ))
        }
    }
}

/// Why the API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    /// A non-loopback address without a token.
    #[error("--api {0} is not a loopback address: set --api-token (or MURMUR_API_TOKEN) so only you can use it")]
    TokenRequired(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {reason}{}", bind_hint(reason))]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: std::io::Error,
    },
}

/// What to do about a bind error a user can fix.
fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "\nhint: another program (or another murmur node) uses that port: pick another, or port 0 for any free one"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "\nhint: that IP is not one of this machine's; 127.0.0.1 serves this machine only"
        }
        std::io::ErrorKind::PermissionDenied => "\nhint: ports below 1024 need root; pick a port above 1024",
        _ => "",
    }
}

/// Refuses to serve the API beyond this machine without a token.
///
/// # Errors
/// [`ApiStartError::TokenRequired`].
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> Result<(), ApiStartError> {
    if addr.ip().is_loopback() || token.is_some() {
        Ok(())
    } else {
        Err(ApiStartError::TokenRequired(addr))
    }
}

/// A bound, not yet serving, API server.
pub struct Api {
    listener: tokio::net::TcpListener,
    state: ApiState,
}

impl Api {
    /// Binds `addr`. A non-loopback address requires a token.
    ///
    /// # Errors
    /// [`ApiStartError`].
    pub async fn bind(node: Node, addr: SocketAddr, token: Option<String>) -> Result<Self, ApiStartError> {
        check_exposure(addr, token.as_deref())?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|reason| ApiStartError::Bind { addr, reason })?;
        let bound = listener
            .local_addr()
            .map_err(|reason| ApiStartError::Bind { addr, reason })?;
        let state = ApiState::new(node, bound, token, CancellationToken::new());
        Ok(Self { listener, state })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then closes open event streams.
    pub async fn serve(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let state = ApiState {
            shutdown: shutdown.clone(),
            ..self.state
        };
        axum::serve(self.listener, router(state))
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/subscribe", post(subscribe))
        .route("/unsubscribe", post(unsubscribe))
        .route("/publish", post(publish))
        .route("/dm", post(dm))
        .route("/inbox/{user}", get(inbox))
        .route("/subscriptions/{user}", get(subscriptions))
        .route("/members/{user}", get(members))
        .route("/rekey", post(rekey))
        .route("/invite", post(invite))
        .route("/peers", get(peers))
        .route("/outbox", get(outbox))
        .route("/events", get(events))
        .fallback(guard::not_found)
        .method_not_allowed_fallback(guard::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::check))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A JSON body whose rejections are JSON errors.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
struct Body<T>(T);

/// A query string whose rejections are JSON errors.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
struct Query<T>(T);

/// `{"status": "…"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    /// What happened.
    pub status: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    user: String,
    topic: String,
    #[serde(default)]
    secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsubscribeRequest {
    user: String,
    topic: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    user: String,
    topic: String,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// Makes the publish idempotent: the same client id yields one message.
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DmRequest {
    user: String,
    to: String,
    msg: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxParams {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    since: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
    /// Walk back from this cursor (an item's `cursor`).
    #[serde(default)]
    before: Option<String>,
    /// Walk forward from this cursor.
    #[serde(default)]
    after: Option<String>,
    /// Accepted here so `?token=` can ride along on any URL.
    #[serde(default)]
    #[allow(dead_code)]
    token: Option<String>,
}

#[derive(Serialize)]
struct PublishResponse {
    status: &'static str,
    id: String,
    queued: bool,
}

#[derive(Serialize)]
struct DmResponse {
    status: &'static str,
    id: String,
    to: String,
    queued: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RekeyRequest {
    user: String,
    topic: String,
    /// Peers (ids or names) to remove.
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Serialize)]
struct RekeyResponse {
    status: String,
    topic: String,
    epoch: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    user: String,
    topic: String,
    peer: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicParam {
    topic: String,
    /// Accepted here so `?token=` can ride along on any URL.
    #[serde(default)]
    #[allow(dead_code)]
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionsParams {
    /// Objects with each topic's epoch instead of bare names.
    #[serde(default)]
    detail: bool,
    /// Accepted here so `?token=` can ride along on any URL.
    #[serde(default)]
    #[allow(dead_code)]
    token: Option<String>,
}

#[derive(Serialize)]
struct MembersResponse {
    topic: String,
    epoch: u32,
    members: Vec<MemberSummary>,
}

#[derive(Serialize)]
struct OutboxResponse {
    dms: Vec<crate::event::OutboxItem>,
    publishes: std::collections::BTreeMap<String, usize>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    name: String,
    peer: String,
}

async fn index() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(INDEX_HTML)).into_response()
}

async fn health(State(state): State<ApiState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        name: state.node.name().to_owned(),
        peer: state.node.peer_id().to_string(),
    })
}

async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| serde_norway::from_str(OPENAPI_YAML).expect("docs/openapi.yaml is valid YAML"));
    Json(doc.clone()).into_response()
}

async fn subscribe(State(state): State<ApiState>, Body(req): Body<SubscribeRequest>) -> Result<Json<Status>, ApiError> {
    state.check_user(&req.user)?;
    if req.secret.as_deref() == Some("") {
        return Err(ApiError::bad_request("secret is empty: leave it out for an open topic"));
    }
    if req
        .secret
        .as_ref()
        .is_some_and(|s| s.len() > crate::commands::MAX_SECRET_LEN)
    {
        return Err(crate::commands::CommandError::SecretTooLong.into());
    }
    let subscription = state.node.subscribe(&req.topic, req.secret.as_deref()).await?;
    let status = match subscription.already {
        Some(_) => format!("{} is already subscribed to {}", req.user, req.topic),
        None => format!("{} subscribed to {}", req.user, req.topic),
    };
    Ok(Json(Status { status }))
}

async fn unsubscribe(
    State(state): State<ApiState>,
    Body(req): Body<UnsubscribeRequest>,
) -> Result<Json<Status>, ApiError> {
    state.check_user(&req.user)?;
    state.node.unsubscribe(&req.topic).await?;
    Ok(Json(Status {
        status: format!("{} unsubscribed from {}", req.user, req.topic),
    }))
}

async fn publish(
    State(state): State<ApiState>,
    Body(req): Body<PublishRequest>,
) -> Result<Json<PublishResponse>, ApiError> {
    state.check_user(&req.user)?;
    let msg = match (req.msg, req.message) {
        (Some(msg), None) | (None, Some(msg)) => msg,
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing field `msg` (or `message`)",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give `msg` or `message`, not both",
            ))
        }
    };
    if msg.is_empty() {
        return Err(ApiError::bad_request("msg is empty: there is nothing to publish"));
    }
    let published = match &req.client_id {
        Some(client_id) => state.node.publish_idempotent(&req.topic, &msg, client_id).await?,
        None => state.node.publish(&req.topic, &msg).await?,
    };
    Ok(Json(PublishResponse {
        status: "message published",
        id: published.id,
        queued: published.queued,
    }))
}

async fn dm(State(state): State<ApiState>, Body(req): Body<DmRequest>) -> Result<Json<DmResponse>, ApiError> {
    state.check_user(&req.user)?;
    let outcome = state.node.dm(&req.to, &req.msg).await?;
    Ok(Json(DmResponse {
        status: if outcome.queued { "queued" } else { "delivered" },
        id: outcome.id,
        to: req.to,
        queued: outcome.queued,
    }))
}

async fn outbox(State(state): State<ApiState>) -> Result<Json<OutboxResponse>, ApiError> {
    let (dms, publishes) = state.node.pending().await?;
    Ok(Json(OutboxResponse { dms, publishes }))
}

/// The response headers that name the next pages of an inbox page: the
/// cursor to pass as `before` (its oldest item) and as `after` (its newest).
const NEXT_BEFORE: &str = "x-murmur-before";
const NEXT_AFTER: &str = "x-murmur-after";

async fn inbox(
    State(state): State<ApiState>,
    Path(user): Path<String>,
    Query(params): Query<InboxParams>,
) -> Result<impl IntoResponse, ApiError> {
    state.check_user(&user)?;
    let cursor = |name: &str, text: &Option<String>| -> Result<Option<Cursor>, ApiError> {
        text.as_deref()
            .map(|t| {
                Cursor::from_hex(t).ok_or_else(|| {
                    ApiError::bad_request(format!("{name} is not a cursor (an inbox item's \"cursor\")"))
                })
            })
            .transpose()
    };
    let (before, after) = (cursor("before", &params.before)?, cursor("after", &params.after)?);
    if before.is_some() && after.is_some() {
        return Err(ApiError::bad_request("give before or after, not both"));
    }
    let limit = params.limit.unwrap_or(DEFAULT_INBOX_LIMIT);
    if limit == 0 || limit > MAX_INBOX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_INBOX_LIMIT}"
        )));
    }
    if params.since.is_some_and(|s| s > i64::MAX as u64) {
        return Err(ApiError::bad_request("since is out of range"));
    }
    let page = InboxPage {
        topic: params.topic,
        since: params.since,
        before,
        after,
        limit,
    };
    let items = state.node.inbox_page(&page).await?;
    let mut headers = axum::http::HeaderMap::new();
    let cursors = items.iter().map(|i| i.cursor.as_str());
    for (name, cursor) in [(NEXT_BEFORE, cursors.clone().min()), (NEXT_AFTER, cursors.max())] {
        if let Some(value) = cursor.and_then(|c| axum::http::HeaderValue::from_str(c).ok()) {
            headers.insert(name, value);
        }
    }
    Ok((headers, Json(items)))
}

async fn subscriptions(
    State(state): State<ApiState>,
    Path(user): Path<String>,
    Query(params): Query<SubscriptionsParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.check_user(&user)?;
    let topics = state.node.topics();
    if !params.detail {
        return Ok(Json(serde_json::json!(topics)));
    }
    let epochs = state.node.topic_peers().await?.epochs;
    let detail: Vec<serde_json::Value> = topics
        .into_iter()
        .map(|t| serde_json::json!({ "topic": t, "epoch": epochs.get(&t).copied().unwrap_or(0) }))
        .collect();
    Ok(Json(serde_json::json!(detail)))
}

async fn members(
    State(state): State<ApiState>,
    Path(user): Path<String>,
    Query(params): Query<TopicParam>,
) -> Result<Json<MembersResponse>, ApiError> {
    state.check_user(&user)?;
    let (epoch, members) = state.node.members(&params.topic).await?;
    Ok(Json(MembersResponse {
        topic: params.topic,
        epoch,
        members,
    }))
}

async fn rekey(State(state): State<ApiState>, Body(req): Body<RekeyRequest>) -> Result<Json<RekeyResponse>, ApiError> {
    state.check_user(&req.user)?;
    let epoch = state.node.rekey(&req.topic, &req.remove).await?;
    Ok(Json(RekeyResponse {
        status: format!("{} moved to epoch {epoch}", req.topic),
        topic: req.topic,
        epoch,
    }))
}

async fn invite(State(state): State<ApiState>, Body(req): Body<InviteRequest>) -> Result<Json<Status>, ApiError> {
    state.check_user(&req.user)?;
    state.node.invite(&req.topic, &req.peer).await?;
    Ok(Json(Status {
        status: format!("invitation to {} sent to {}", req.topic, req.peer),
    }))
}

async fn peers(State(state): State<ApiState>) -> Result<Json<Vec<PeerSummary>>, ApiError> {
    Ok(Json(state.node.peers().await?))
}

async fn events(State(state): State<ApiState>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = BroadcastStream::new(state.node.events())
        .map(|item| {
            let event = match item {
                Ok(event) => event,
                Err(BroadcastStreamRecvError::Lagged(n)) => std::sync::Arc::new(Event::Error {
                    error: format!("event stream fell behind: {n} events skipped"),
                }),
            };
            Ok(SseEvent::default().data(event.to_json()))
        })
        .take_until(state.shutdown.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}
