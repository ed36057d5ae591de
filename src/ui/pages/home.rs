//! `/`: the repositories the viewer may pull, searchable, by most recent
//! push or by name, a page at a time.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::super::format::size;
use super::super::input::UiQuery;
use super::super::{UiError, UiState, Viewer, paths, render};
use super::layout::Layout;
use super::repository::When;
use crate::auth::Auth;
use crate::metadata::unix_now;
use crate::policy::visibility::is_public;
use crate::registry::RepositorySort;

/// Rows per page.
const PAGE_ROWS: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct HomeQuery {
    #[serde(default)]
    q: String,
    sort: Option<String>,
    cursor: Option<String>,
}

struct RepositoryRow {
    name: String,
    url: String,
    public: bool,
    platforms: Vec<String>,
    tag_count: u64,
    size: String,
    pushed: Option<When>,
}

#[derive(askama::Template)]
#[template(path = "home.html")]
struct Home {
    layout: Layout,
    query: String,
    sort: &'static str,
    rows: Vec<RepositoryRow>,
    next_page: Option<String>,
}

pub async fn show(
    State(state): State<UiState>,
    viewer: Viewer,
    UiQuery(query): UiQuery<HomeQuery>,
) -> Result<Response, UiError> {
    let (sort, order) = match query.sort.as_deref() {
        Some("name") => ("name", RepositorySort::Name),
        _ => ("recent", RepositorySort::Recent),
    };
    let search = query.q.trim().to_string();
    let cursor = query.cursor.as_deref();
    let viewer_rights = (!viewer.open).then_some(&viewer.principal);
    let visible = Auth::pull_test(state.auth.as_deref(), viewer_rights).await?;
    let page = state
        .registry
        .browse_repositories(&search, order, cursor, Some(PAGE_ROWS), &*visible)
        .await?;
    let public_paths = state.policies.public_paths().await?;
    let now = unix_now();
    let rows = page
        .items
        .into_iter()
        .map(|repository| RepositoryRow {
            url: paths::repository(&repository.name),
            public: is_public(&repository.name, &public_paths),
            platforms: repository.platforms.iter().map(|p| p.to_string()).collect(),
            tag_count: repository.tag_count,
            size: size(repository.size),
            pushed: repository.last_pushed_at.map(|at| When::at(at, now)),
            name: repository.name,
        })
        .collect();
    let next_page = page.next.map(|cursor| {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &search)
            .append_pair("sort", sort)
            .append_pair("cursor", &cursor)
            .finish();
        format!("/?{query}")
    });
    render(&Home {
        layout: Layout::for_viewer(&viewer),
        query: search,
        sort,
        rows,
        next_page,
    })
}
