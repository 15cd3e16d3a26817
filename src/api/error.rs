//! `ApiError`: every failure of the API as a status and `{"error": "…"}`.
//! Bad input is always a 4xx; internals are never shown to the client.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::commands::CommandError;
use crate::reply::NodeError;

/// An error answer: status and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with `status` and a message for the client.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Hints are for terminals; the API keeps the first line.
        let message = self.message.lines().next().unwrap_or_default().to_owned();
        (self.status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match &rejection {
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            other => other.status(),
        };
        let message = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "expected a JSON body with Content-Type: application/json".to_owned()
            }
            JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
                format!("request body is larger than {} bytes", super::MAX_BODY_BYTES)
            }
            other => other.body_text(),
        };
        Self::new(status, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let status = match e {
            CommandError::TooLong(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let status = match &e {
            NodeError::Command(c) => return c.clone().into(),
            NodeError::Topic(_) | NodeError::SelfDm | NodeError::InvalidName(_) | NodeError::InvalidClientId => {
                StatusCode::BAD_REQUEST
            }
            NodeError::NotSubscribed(_) | NodeError::UnknownPeer(_) => StatusCode::NOT_FOUND,
            NodeError::AmbiguousPeer(..) | NodeError::WasRemoved { .. } | NodeError::SubscribedOtherwise(_) => {
                StatusCode::CONFLICT
            }
            NodeError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            NodeError::Unreachable { .. } | NodeError::Refused { .. } => StatusCode::BAD_GATEWAY,
            NodeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Store(_) | NodeError::Keyring(_) | NodeError::Network(_) | NodeError::Startup(_) => {
                tracing::error!("api: {e}");
                return Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the node's log");
            }
        };
        Self::new(status, e.to_string())
    }
}
