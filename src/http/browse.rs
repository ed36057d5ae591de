//! `/api/v1/repositories…`: the rows the web UI's pages show, as JSON, for
//! the integrations that scrape `_catalog` today. The rows come from
//! `registry::browse` (metadata only, never blob storage), exactly as the
//! pages get them; which repositories a caller sees is `auth`'s pull test.
//!
//! Anonymous callers see public repositories. Basic credentials (a password,
//! or an access token as the password) or `Authorization: Bearer
//! berth_pat_…` see what that user, or that token's scopes, may pull.
//! Wrong credentials are refused (401), never taken as anonymous. A
//! repository the caller may not pull answers exactly as one that does not
//! exist: 404 `NAME_UNKNOWN`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::headers::header_str;
use super::input::{ApiPath, ApiQuery};
use super::token::basic_credentials;
use crate::auth::{Auth, Principal};
use crate::oci::{ErrorCode, Reference, RepositoryName};
use crate::registry::{BrowsePage, RepositorySort, RepositorySummary, TagSort};

/// Who is reading: everyone when authentication is off, else a principal
/// (anonymous when no credentials came).
pub struct Reader(Option<Principal>);

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized)
        .message(message)
        .header(header::WWW_AUTHENTICATE, "Basic realm=\"berth\"")
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(auth) = &state.auth else {
            return Ok(Reader(None));
        };
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        let Some(authorization) = header_str(&parts.headers, &header::AUTHORIZATION) else {
            if parts.headers.contains_key(header::AUTHORIZATION) {
                return Err(unauthorized(
                    "the Authorization header is not readable text",
                ));
            }
            return Ok(Reader(Some(Principal::default())));
        };
        if let Some((user, password)) = basic_credentials(&parts.headers) {
            let principal = auth.login_password(&user, &password, address).await?;
            return Ok(Reader(Some(principal)));
        }
        match authorization.split_once(' ') {
            Some((scheme, secret)) if scheme.eq_ignore_ascii_case("bearer") => {
                let principal = auth.login_access_token(secret.trim(), address).await?;
                Ok(Reader(Some(principal)))
            }
            _ => Err(unauthorized(
                "use Basic credentials (a password or an access token) or `Bearer berth_pat_…`",
            )),
        }
    }
}

impl Reader {
    /// Which repositories the reader may pull, by rights and visibility now.
    async fn pull_test(
        &self,
        state: &AppState,
    ) -> Result<Box<dyn Fn(&str) -> bool + Send + Sync>, ApiError> {
        Ok(Auth::pull_test(state.auth.as_deref(), self.0.as_ref()).await?)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    sort: Option<String>,
    n: Option<u32>,
    cursor: Option<String>,
}

fn sort_refused(sort: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest)
        .message(format!(
            "`sort` is `recent` or `name`, not `{}`",
            sort.chars().take(32).collect::<String>()
        ))
        .detail(json!({"field": "sort"}))
}

fn repository_order(sort: Option<&str>) -> Result<RepositorySort, ApiError> {
    match sort {
        None | Some("recent") => Ok(RepositorySort::Recent),
        Some("name") => Ok(RepositorySort::Name),
        Some(other) => Err(sort_refused(other)),
    }
}

fn tag_order(sort: Option<&str>) -> Result<TagSort, ApiError> {
    match sort {
        None | Some("recent") => Ok(TagSort::Recent),
        Some("name") => Ok(TagSort::Name),
        Some(other) => Err(sort_refused(other)),
    }
}

/// `{"<field>": items, "next": cursor}`, and the following page's URL in a
/// `Link` header as `_catalog` gives it, so either kind of client pages on.
fn page<T: Serialize>(
    path: &str,
    query: &ListQuery,
    field: &str,
    page: BrowsePage<T>,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Response {
    let mut body = extra;
    body.insert(field.to_string(), json!(page.items));
    body.insert("next".to_string(), json!(page.next));
    let mut response = Json(body).into_response();
    if let Some(cursor) = &page.next {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        if !query.q.is_empty() {
            link.append_pair("q", &query.q);
        }
        if let Some(sort) = &query.sort {
            link.append_pair("sort", sort);
        }
        if let Some(n) = query.n {
            link.append_pair("n", &n.to_string());
        }
        link.append_pair("cursor", cursor);
        let value = format!("</api/v1/{path}?{}>; rel=\"next\"", link.finish());
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

/// A repository as listed, with whether anonymous callers may pull it.
#[derive(Serialize)]
struct RepositoryRow {
    #[serde(flatten)]
    summary: RepositorySummary,
    public: bool,
}

/// `GET /api/v1/repositories?q=&sort=recent|name&n=&cursor=`
pub async fn repositories(
    State(state): State<AppState>,
    reader: Reader,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let order = repository_order(query.sort.as_deref())?;
    let search = query.q.trim();
    let cursor = query.cursor.as_deref();
    let visible = reader.pull_test(&state).await?;
    let listed = state
        .registry
        .browse_repositories(search, order, cursor, query.n, &*visible)
        .await?;
    let public = public_test(&state).await?;
    let listed = BrowsePage {
        items: listed
            .items
            .into_iter()
            .map(|summary| RepositoryRow {
                public: public(&summary.name),
                summary,
            })
            .collect(),
        next: listed.next,
    };
    Ok(page(
        "repositories",
        &query,
        "repositories",
        listed,
        Default::default(),
    ))
}

/// Whether anonymous callers may pull a repository (always, with authentication off).
async fn public_test(
    state: &AppState,
) -> Result<Box<dyn Fn(&str) -> bool + Send + Sync>, ApiError> {
    let anonymous = Principal::default();
    Ok(Auth::pull_test(state.auth.as_deref(), Some(&anonymous)).await?)
}

/// What a path under `/api/v1/repositories/` names.
enum Target {
    Repository,
    Tags,
    Untagged,
    Manifest(Reference),
}

/// `<name>`, `<name>/-/tags`, `<name>/-/untagged` or
/// `<name>/-/manifests/<tag or digest>`: no name component is `-`, so the
/// first `/-/` ends the name.
fn parse_target(path: &str) -> Result<(RepositoryName, Target), ApiError> {
    let (name, rest) = match path.split_once("/-/") {
        Some((name, rest)) => (name, Some(rest)),
        None => (path.trim_end_matches('/'), None),
    };
    let name: RepositoryName = name
        .parse()
        .map_err(|e| ApiError::new(ErrorCode::NameInvalid).message(format!("{e}")))?;
    let target = match rest {
        None => Target::Repository,
        Some("tags") => Target::Tags,
        Some("untagged") => Target::Untagged,
        Some(rest) => match rest.strip_prefix("manifests/") {
            Some(reference) => Target::Manifest(Reference::parse(reference).map_err(|e| {
                ApiError::new(ErrorCode::ManifestInvalid)
                    .status(axum::http::StatusCode::BAD_REQUEST)
                    .message(format!("{e}"))
            })?),
            None => return Err(ApiError::new(ErrorCode::NotFound)),
        },
    };
    Ok((name, target))
}

/// `GET /api/v1/repositories/<name>[/-/tags|/-/untagged|/-/manifests/<reference>]`
pub async fn repository(
    State(state): State<AppState>,
    reader: Reader,
    ApiPath(path): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let (name, target) = parse_target(&path)?;
    if !reader.pull_test(&state).await?(name.as_str()) {
        return Err(ApiError::new(ErrorCode::NameUnknown));
    }
    let registry = &state.registry;
    let cursor = query.cursor.as_deref();
    let named = |name: &RepositoryName| {
        let mut extra = serde_json::Map::new();
        extra.insert("name".into(), json!(name.as_str()));
        extra
    };
    let path = format!("repositories/{name}/-/");
    Ok(match target {
        Target::Repository => {
            let summary = registry.repository_summary(&name).await?;
            let public = public_test(&state).await?(name.as_str());
            Json(RepositoryRow { summary, public }).into_response()
        }
        Target::Tags => {
            let order = tag_order(query.sort.as_deref())?;
            let tags = registry
                .browse_tags(&name, query.q.trim(), order, cursor, query.n)
                .await?;
            page(&format!("{path}tags"), &query, "tags", tags, named(&name))
        }
        Target::Untagged => {
            if query.sort.is_some() || !query.q.is_empty() {
                return Err(ApiError::new(ErrorCode::InvalidRequest)
                    .message("untagged manifests are newest first and cannot be searched"));
            }
            let manifests = registry.browse_untagged(&name, cursor, query.n).await?;
            page(
                &format!("{path}untagged"),
                &query,
                "manifests",
                manifests,
                named(&name),
            )
        }
        Target::Manifest(reference) => {
            if query.sort.is_some() || !query.q.is_empty() || query.n.is_some() || cursor.is_some()
            {
                return Err(ApiError::new(ErrorCode::InvalidRequest)
                    .message("a manifest is one answer: it takes no query"));
            }
            let detail = registry.manifest_detail(&name, &reference).await?;
            let mut body = serde_json::to_value(detail)
                .map_err(|e| ApiError::internal(ErrorCode::Internal, &e.to_string()))?;
            body["name"] = json!(name.as_str());
            Json(body).into_response()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_repository_and_what_of_it() {
        let (name, target) = parse_target("alice/web").unwrap();
        assert_eq!(name.as_str(), "alice/web");
        assert!(matches!(target, Target::Repository));
        let (name, target) = parse_target("a/b/c/-/tags").unwrap();
        assert_eq!(name.as_str(), "a/b/c");
        assert!(matches!(target, Target::Tags));
        assert!(matches!(
            parse_target("a/b/-/untagged").unwrap().1,
            Target::Untagged
        ));
        assert!(matches!(
            parse_target("a/b/-/manifests/v1").unwrap().1,
            Target::Manifest(Reference::Tag(_))
        ));
        assert!(parse_target("Alice/web").is_err());
        assert!(parse_target("a/b/-/manifests/bad tag").is_err());
        assert!(parse_target("a/b/-/settings").is_err());
        assert!(parse_target("a/b/-/manifests/sha256:short").is_err());
    }
}
