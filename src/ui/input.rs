//! Query strings and form bodies of pages, every name and value checked by
//! `oci::text` before it is deserialised, and anything unreadable answered
//! as a 400 page rather than axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawPathParams, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::UiError;
use crate::oci::text::{MAX_TEXT_LEN, refusal};

fn check_pairs(encoded: &[u8]) -> Result<(), UiError> {
    for (name, value) in url::form_urlencoded::parse(encoded) {
        for text in [&name, &value] {
            if let Some(reason) = refusal(text, MAX_TEXT_LEN) {
                let field: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
                return Err(UiError::Invalid(format!("`{field}` {reason}")));
            }
        }
    }
    Ok(())
}

/// A page's path parameters (a user, an organization, a token id), each
/// checked like a query value: a NUL or a control character never reaches
/// a query (PostgreSQL refuses a NUL in text, which would be a 500).
pub struct UiPath<T>(pub T);

/// Path parameters no page has; a handler says which thing is missing.
#[derive(Debug)]
pub struct BadPath;

impl IntoResponse for BadPath {
    fn into_response(self) -> Response {
        UiError::NotFound("there is no such page".into()).into_response()
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for UiPath<T> {
    type Rejection = BadPath;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, BadPath> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| BadPath)?;
        if raw
            .iter()
            .any(|(_, value)| refusal(value, MAX_TEXT_LEN).is_some())
        {
            return Err(BadPath);
        }
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| UiPath(value))
            .map_err(|_| BadPath)
    }
}

/// A page's query string.
pub struct UiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for UiQuery<T> {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, UiError> {
        check_pairs(parts.uri.query().unwrap_or("").as_bytes())?;
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| UiQuery(value))
            .map_err(|r| UiError::Invalid(r.body_text()))
    }
}

/// An `application/x-www-form-urlencoded` form body. A form with repeated
/// names (a set of checkboxes) is taken as `Vec<(String, String)>`.
pub struct UiForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for UiForm<T> {
    type Rejection = UiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, UiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|r| UiError::Invalid(r.body_text()))?;
        check_pairs(&bytes)?;
        serde_urlencoded_from(&bytes).map(UiForm)
    }
}

fn serde_urlencoded_from<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, UiError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|e| UiError::Invalid(format!("the form is invalid: {e}")))
}

/// The query string of `uri`, for handlers reached through a dispatcher.
pub fn parse_query<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, UiError> {
    check_pairs(uri.query().unwrap_or("").as_bytes())?;
    Query::<T>::try_from_uri(uri)
        .map(|Query(value)| value)
        .map_err(|r| UiError::Invalid(r.body_text()))
}

/// The form body of `request`, for handlers reached through a dispatcher.
pub async fn parse_form<T: DeserializeOwned>(request: Request) -> Result<T, UiError> {
    let bytes = Bytes::from_request(request, &())
        .await
        .map_err(|r| UiError::Invalid(r.body_text()))?;
    check_pairs(&bytes)?;
    serde_urlencoded_from(&bytes)
}
