//! `GET /v2/_catalog` and `GET /v2/<name>/tags/list`, both paginated with
//! `n` and `last` and a `Link` header to the next page.

use axum::Json;
use axum::extract::Request;
use axum::http::{Uri, header};
use axum::response::IntoResponse;

use super::auth::caller;
use super::error::ApiError;
use super::headers::query_value;
use super::{ApiResult, AppState, parse_name, parse_tag};
use crate::auth::token::Claims;
use crate::oci::{ErrorCode, RepositoryName, Tag};
use crate::registry::ListPage;

/// `n` and `last`; `last` (empty meaning absent) is a name of the list, so
/// whatever `parse` refuses cannot be one and is refused too.
fn pagination<T>(
    uri: &Uri,
    parse: impl Fn(&str) -> Result<T, ApiError>,
) -> Result<(Option<u32>, Option<T>), ApiError> {
    let n = match query_value(uri, "n") {
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            ApiError::new(ErrorCode::Unsupported)
                .status(axum::http::StatusCode::BAD_REQUEST)
                .message(format!("`n` must be a non-negative integer, not `{n}`"))
        })?),
        None => None,
    };
    let last = query_value(uri, "last")
        .filter(|last| !last.is_empty())
        .map(|last| parse(&last))
        .transpose()?;
    Ok((n, last))
}

/// `body` as JSON, with a `Link` to the next page when there is one. The
/// body borrows the page's names: a list of 1,000 tags built as a JSON value
/// first cost a copy of every name per request.
fn with_link(path: &str, page: &ListPage, body: impl serde::Serialize) -> ApiResult {
    let mut response = Json(body).into_response();
    if let Some(last) = &page.next_last {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("n", &page.page_size.to_string())
            .append_pair("last", last)
            .finish();
        let link = format!("<{path}?{query}>; rel=\"next\"");
        response.headers_mut().insert(
            header::LINK,
            link.parse().expect("encoded link is a valid header"),
        );
    }
    Ok(response)
}

/// The catalog, limited to what the caller may pull as they stand now (a
/// token's `access` claim only covers the scopes it was asked for).
pub async fn list_repositories(
    state: &AppState,
    claims: Option<Claims>,
    request: Request,
) -> ApiResult {
    let (n, last) = pagination(request.uri(), parse_name)?;
    let last = last.as_ref().map(RepositoryName::as_str);
    let page = match (&state.auth, claims) {
        (Some(auth), Some(claims)) => {
            let visible = auth.pull_check(caller(auth, &claims).await?).await?;
            state
                .registry
                .list_visible_repositories(n, last, &visible)
                .await?
        }
        _ => state.registry.list_repositories(n, last).await?,
    };
    #[derive(serde::Serialize)]
    struct Catalog<'a> {
        repositories: &'a [String],
    }
    let body = Catalog {
        repositories: page.names(),
    };
    with_link("/v2/_catalog", &page, body)
}

pub async fn list_tags(state: &AppState, name: &RepositoryName, request: Request) -> ApiResult {
    let (n, last) = pagination(request.uri(), parse_tag)?;
    let page = state
        .registry
        .list_tags(name, n, last.as_ref().map(Tag::as_str))
        .await?;
    #[derive(serde::Serialize)]
    struct TagList<'a> {
        name: &'a str,
        tags: &'a [String],
    }
    let body = TagList {
        name: name.as_str(),
        tags: page.names(),
    };
    with_link(&format!("/v2/{name}/tags/list"), &page, body)
}
