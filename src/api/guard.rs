//! Request guards: the bearer token (constant-time), the Host header
//! (DNS-rebinding protection) and JSON answers for unknown routes.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};
use crate::crypto::constant_time_eq;

/// The Host header values a browser sends for a server at `addr`. Empty
/// (anything goes) for an unspecified address, where the token guards instead.
pub fn allowed_hosts(addr: SocketAddr) -> Vec<String> {
    if addr.ip().is_unspecified() {
        return Vec::new();
    }
    let port = addr.port();
    let mut hosts = vec![addr.to_string()];
    if addr.ip().is_loopback() {
        hosts.extend([
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ]);
    }
    hosts
}

fn token_of(request: &Request) -> Option<&str> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        return value.to_str().ok()?.strip_prefix("Bearer ");
    }
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// Refuses requests for another Host (403) and, with a token set, requests
/// without it (401) — except `GET /health`.
pub async fn check(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if !state.hosts.is_empty() {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !state.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Host {host:?} is not this API's address (DNS-rebinding protection)"),
            )
            .into_response();
        }
    }
    if let Some(expected) = &state.token {
        let open = request.method() == Method::GET && request.uri().path() == "/health";
        let given = token_of(&request).unwrap_or("");
        if !open && !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API token: send Authorization: Bearer <token>",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// 404 for unknown routes.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route for {method} {}", uri.path()))
}

/// 405 for a known route with another method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
