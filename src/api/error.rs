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
            JsonRejection::JsonDataError(e) => format!("invalid request body: {}", plain_serde(&e.body_text())),
            JsonRejection::JsonSyntaxError(e) => {
                format!(
                    "request body is not valid JSON: {}",
                    without_axum_prefix(&e.body_text())
                )
            }
            other => other.body_text(),
        };
        Self::new(status, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(format!("invalid query string: {}", plain_serde(&rejection.body_text())))
    }
}

/// A rejection's text less axum's prefix (`Failed to parse the request
/// body as JSON: `, `Failed to deserialize query string: `…).
fn without_axum_prefix(text: &str) -> &str {
    text.split_once(": ").map_or(text, |(_, rest)| rest)
}

/// A serde error as axum words it (`Failed to deserialize…: user: invalid
/// type: integer `5`, expected a string at line 1 column 9`), in the words
/// of the API: `` `user` must be a string, not integer `5` ``.
fn plain_serde(text: &str) -> String {
    let text = without_axum_prefix(text);
    // serde_json's position: a one-line body makes it noise.
    let text = match text.rfind(" at line ") {
        Some(at) if text[at + 9..].split(" column ").all(|n| n.parse::<u64>().is_ok()) => &text[..at],
        _ => text,
    };
    // serde_path_to_error's path, if any (`user: …`, `[0]: …`).
    let (path, error) = match text.split_once(": ") {
        Some((path, error)) if !path.contains(' ') => (Some(path), error),
        _ => (None, text),
    };
    if path.is_some_and(|p| p.starts_with('[')) {
        return "expected a JSON object".to_owned();
    }
    let json = |kind: &str| match kind {
        "sequence" | "a sequence" => "an array".to_owned(),
        "map" | "a map" => "an object".to_owned(),
        "unit value" => "null".to_owned(),
        other => other.to_owned(),
    };
    if let Some((found, wanted)) = error
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        let wanted = if wanted.starts_with("struct ") {
            "a JSON object".to_owned()
        } else {
            json(wanted)
        };
        return match path {
            Some(p) => format!("`{p}` must be {wanted}, not {}", json(found)),
            None => format!("expected {wanted}, not {}", json(found)),
        };
    }
    match path {
        // Unknown fields and missing ones name the field already.
        Some(p) if !error.contains(&format!("`{p}`")) => format!("`{p}`: {error}"),
        _ => error.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::plain_serde;

    #[test]
    fn serde_errors_are_told_in_the_words_of_the_api() {
        let axum = "Failed to deserialize the JSON body into the target type: ";
        for (said, meant) in [
            (
                "user: invalid type: integer `5`, expected a string at line 1 column 9",
                "`user` must be a string, not integer `5`",
            ),
            ("missing field `user` at line 1 column 13", "missing field `user`"),
            (
                "foo: unknown field `foo`, expected one of `user`, `topic` at line 1 column 29",
                "unknown field `foo`, expected one of `user`, `topic`",
            ),
            (
                "topic: invalid type: sequence, expected a string at line 1 column 20",
                "`topic` must be a string, not an array",
            ),
            (
                "[0]: invalid type: integer `1`, expected a string at line 1 column 2",
                "expected a JSON object",
            ),
            (
                "invalid type: string \"x\", expected struct PublishRequest at line 1 column 3",
                "expected a JSON object, not string \"x\"",
            ),
            (
                "limit: invalid digit found in string",
                "`limit`: invalid digit found in string",
            ),
        ] {
            assert_eq!(plain_serde(&format!("{axum}{said}")), meant, "{said}");
        }
    }
}
