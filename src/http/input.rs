//! Strings a request brings, checked before they go any further: no control
//! characters (PostgreSQL refuses a NUL in text, and none belongs in a name,
//! a pattern, a password or a description) and a bounded length. The
//! extractors `/api/v1` takes its path, query and JSON body with check every
//! string this way and answer what they refuse, or cannot read, in the API's
//! error shape rather than axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::oci::ErrorCode;
pub use crate::oci::text::{MAX_TEXT_LEN, refusal};

/// 400 naming the field (cut short: a hostile name may be long too).
fn refused(field: &str, reason: &str) -> ApiError {
    let field: String = field.chars().take(64).collect();
    ApiError::new(ErrorCode::InvalidRequest)
        .message(format!("`{field}` {reason}"))
        .detail(json!({ "field": field }))
}

fn check(field: &str, text: &str) -> Result<(), ApiError> {
    match refusal(text, MAX_TEXT_LEN) {
        Some(reason) => Err(refused(field, reason)),
        None => Ok(()),
    }
}

/// An axum rejection (a body too large, a missing parameter, a value of the
/// wrong type) with its status and text, in the API's error shape.
fn rejected(status: StatusCode, text: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest)
        .status(status)
        .message(text)
}

/// Path parameters, every one checked.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|r| rejected(r.status(), r.body_text()))?;
        for (name, value) in &raw {
            check(name, value)?;
        }
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|r| rejected(r.status(), r.body_text()))?;
        Ok(ApiPath(value))
    }
}

/// The query string, every name and value checked.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            check(&name, &name)?;
            check(&name, &value)?;
        }
        let Query(value) = Query::<T>::try_from_uri(&parts.uri)
            .map_err(|r| rejected(r.status(), r.body_text()))?;
        Ok(ApiQuery(value))
    }
}

/// A JSON body, every string in it (object keys too) checked.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|r| rejected(r.status(), r.body_text()))?;
        let invalid = |e: serde_json::Error| {
            ApiError::new(ErrorCode::InvalidRequest)
                .message(format!("the JSON body is invalid: {e}"))
        };
        let value: Value = serde_json::from_slice(&bytes).map_err(invalid)?;
        check_json(&value, "body")?;
        serde_json::from_value(value).map(ApiJson).map_err(invalid)
    }
}

/// Checks every string in `value`, which lies at `path` (`body.exclude[0]`).
fn check_json(value: &Value, path: &str) -> Result<(), ApiError> {
    match value {
        Value::String(text) => check(path, text),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_json(item, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().try_for_each(|(key, item)| {
            let path = format!("{path}.{key}");
            check(&path, key)?;
            check_json(item, &path)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_of_a_json_body_is_checked() {
        let fine = json!({"name": "alice", "scopes": ["repository:a/*:pull"], "n": 1, "x": null});
        assert!(check_json(&fine, "body").is_ok());
        for bad in [
            json!({"name": "al\u{0}ice"}),
            json!({"scopes": ["ok", "not\u{0}ok"]}),
            json!({"nested": {"deep": ["\u{1b}[31m"]}}),
            json!({"key\u{0}": "value"}),
            json!({"long": "a".repeat(MAX_TEXT_LEN + 1)}),
        ] {
            assert!(check_json(&bad, "body").is_err(), "{bad} accepted");
        }
    }
}
