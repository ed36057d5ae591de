//! The stylesheet and script, compiled into the binary from `static/`, so
//! the pages work air-gapped. Their URLs carry a hash of the content
//! ([`STYLESHEET`], [`SCRIPT`]), so a browser may keep them for a year and
//! still never runs an old script against a new page.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::UiState;

const CSS: &str = include_str!("../../static/berth.css");
const JS: &str = include_str!("../../static/berth.js");

/// `/static/berth.<hash>.css`, as the pages link it.
pub static STYLESHEET: LazyLock<String> =
    LazyLock::new(|| format!("/static/berth.{}.css", short_hash(CSS)));
/// `/static/berth.<hash>.js`, as the pages load it.
pub static SCRIPT: LazyLock<String> =
    LazyLock::new(|| format!("/static/berth.{}.js", short_hash(JS)));

fn short_hash(content: &str) -> String {
    hex::encode(&Sha256::digest(content.as_bytes())[..6])
}

pub fn router() -> Router<UiState> {
    Router::new()
        .route(
            STYLESHEET.as_str(),
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            SCRIPT.as_str(),
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}
