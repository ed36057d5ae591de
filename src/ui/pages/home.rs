//! `/`: the repositories the viewer may pull.

use axum::extract::State;
use axum::response::Response;

use super::super::{UiError, UiState, Viewer, render};
use super::layout::Layout;

#[derive(askama::Template)]
#[template(path = "home.html")]
struct Home {
    layout: Layout,
    repositories: Vec<String>,
}

pub async fn show(State(state): State<UiState>, viewer: Viewer) -> Result<Response, UiError> {
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
    render(&Home {
        layout: Layout::for_viewer(&viewer),
        repositories: page.names,
    })
}
