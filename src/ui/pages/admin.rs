//! `/admin`, for administrators only (anyone else signed in gets 403, an
//! anonymous visitor the sign-in page): the users (created, and deleted
//! after a confirmation step, through `admin::Command`s run as the viewer),
//! the collector's last passes and what freed, and what this instance runs
//! on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::super::format;
use super::super::input::{BadPath, UiPath};
use super::super::input::{UiForm, UiQuery};
use super::super::{UiError, UiState, Viewer, render, see_other};
use super::account::{shown, signed_in};
use super::layout::Layout;
use crate::admin::{AdminError, Command, NewUser};
use crate::metadata::unix_now;

/// The viewer, if an administrator; else what they get instead.
fn administrator(viewer: &Viewer, here: &str) -> Result<(), Box<Response>> {
    if viewer.open {
        // Authentication off: everyone is, as on the API.
        return Ok(());
    }
    signed_in(viewer, here)?;
    if viewer.is_admin() {
        Ok(())
    } else {
        let refusal = UiError::Forbidden("only an administrator may see this page".into());
        Err(Box::new(refusal.into_response()))
    }
}

#[derive(askama::Template)]
#[template(path = "admin.html")]
struct AdminPage {
    layout: Layout,
    notice: Option<&'static str>,
    error: Option<String>,
    users: Vec<UserRow>,
    passes: Vec<PassRow>,
    version: &'static str,
    database: &'static str,
    blob_store: String,
    tls: bool,
    public_url: String,
    /// What the create form had, when shown again after an error.
    draft_name: String,
}

#[derive(Deserialize)]
struct ListedUser {
    name: String,
    admin: bool,
    created_at: i64,
}

struct UserRow {
    name: String,
    admin: bool,
    created: String,
    created_exact: String,
    /// The viewer themself, whom this page does not delete.
    is_viewer: bool,
}

struct PassRow {
    finished: String,
    finished_exact: String,
    duration: String,
    expired_tags: u64,
    manifests: u64,
    blob_links: u64,
    blobs: u64,
    uploads: u64,
    objects_deleted: u64,
    objects_failed: u64,
    freed: String,
}

#[derive(Deserialize)]
pub struct AdminQuery {
    #[serde(default)]
    done: String,
}

fn notice(done: &str) -> Option<&'static str> {
    match done {
        "user-created" => Some("The user was created."),
        "user-deleted" => {
            Some("The user was deleted, with their tokens, sessions and memberships.")
        }
        _ => None,
    }
}

async fn page(
    state: &UiState,
    viewer: &Viewer,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Result<AdminPage, UiError> {
    let listed = shown(
        state
            .admin
            .execute(&viewer.origin, &viewer.actor(), Command::ListUsers)
            .await?,
    );
    let listed: Vec<ListedUser> = serde_json::from_value(listed["users"].clone())
        .map_err(|e| UiError::Internal(format!("user listing: {e}")))?;
    let now = unix_now();
    let users = listed
        .into_iter()
        .map(|u| UserRow {
            is_viewer: viewer.name() == Some(u.name.as_str()),
            created: format::relative(u.created_at, now),
            created_exact: format::absolute(u.created_at),
            name: u.name,
            admin: u.admin,
        })
        .collect();
    let passes = state
        .gc
        .recent_passes()
        .await?
        .into_iter()
        .map(|p| PassRow {
            finished: format::relative(p.finished_at, now),
            finished_exact: format::absolute(p.finished_at),
            duration: match p.duration_ms {
                0..1_000 => format!("{} ms", p.duration_ms),
                ms => format!("{:.1} s", ms as f64 / 1000.0),
            },
            expired_tags: p.expired_tags,
            manifests: p.manifests,
            blob_links: p.blob_links,
            blobs: p.blobs,
            uploads: p.uploads,
            objects_deleted: p.objects_deleted,
            objects_failed: p.objects_failed,
            freed: format::size(p.bytes_freed),
        })
        .collect();
    let facts = &state.server;
    Ok(AdminPage {
        layout: Layout::for_viewer(viewer),
        notice,
        error,
        users,
        passes,
        version: facts.version,
        database: facts.database,
        blob_store: facts.blob_store.clone(),
        tls: state.tls,
        public_url: state.public_url.clone().unwrap_or_default(),
        draft_name: String::new(),
    })
}

pub async fn show(
    State(state): State<UiState>,
    viewer: Viewer,
    UiQuery(query): UiQuery<AdminQuery>,
) -> Result<Response, UiError> {
    if let Err(refusal) = administrator(&viewer, "/admin") {
        return Ok(*refusal);
    }
    render(&page(&state, &viewer, notice(&query.done), None).await?)
}

#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    /// A ticked checkbox sends `on`; an unticked one nothing.
    #[serde(default)]
    admin: String,
}

pub async fn create_user(
    State(state): State<UiState>,
    viewer: Viewer,
    UiForm(form): UiForm<NewUserForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&form.csrf)?;
    if let Err(refusal) = administrator(&viewer, "/admin") {
        return Ok(*refusal);
    }
    let name = form.name.trim().to_string();
    let command = Command::AddUser(NewUser {
        name: name.clone(),
        password: form.password,
        admin: !form.admin.is_empty(),
    });
    let (status, message) = match state
        .admin
        .execute(&viewer.origin, &viewer.actor(), command)
        .await
    {
        Ok(_) => return Ok(see_other("/admin?done=user-created")),
        Err(AdminError::Invalid(message)) => (StatusCode::BAD_REQUEST, message),
        Err(AdminError::Conflict(message)) => (StatusCode::CONFLICT, message),
        Err(e) => return Err(e.into()),
    };
    let mut page = page(&state, &viewer, None, Some(message)).await?;
    page.draft_name = name;
    Ok((status, render(&page)?).into_response())
}

#[derive(askama::Template)]
#[template(path = "delete_user.html")]
struct ConfirmDelete {
    layout: Layout,
    name: String,
}

fn user_name(path: Result<UiPath<String>, BadPath>) -> Result<String, UiError> {
    path.map(|UiPath(name)| name)
        .map_err(|_| UiError::NotFound("there is no such user".into()))
}

/// The confirmation step before a user is deleted: a page of its own, so
/// the delete works (and asks first) without JavaScript too.
pub async fn confirm_delete(
    State(state): State<UiState>,
    viewer: Viewer,
    name: Result<UiPath<String>, BadPath>,
) -> Result<Response, UiError> {
    let name = user_name(name)?;
    if let Err(refusal) = administrator(&viewer, &format!("/admin/users/{name}/delete")) {
        return Ok(*refusal);
    }
    let users = shown(
        state
            .admin
            .execute(&viewer.origin, &viewer.actor(), Command::ListUsers)
            .await?,
    );
    let exists = users["users"]
        .as_array()
        .is_some_and(|users| users.iter().any(|u| u["name"] == name.as_str()));
    if !exists {
        return Err(UiError::NotFound(format!("no user `{name}`")));
    }
    render(&ConfirmDelete {
        layout: Layout::for_viewer(&viewer),
        name,
    })
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
}

pub async fn delete_user(
    State(state): State<UiState>,
    viewer: Viewer,
    name: Result<UiPath<String>, BadPath>,
    UiForm(form): UiForm<DeleteForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&form.csrf)?;
    let name = user_name(name)?;
    if viewer.name() == Some(name.as_str()) {
        // The last administrator could lock everyone out; another one (or
        // `berth user remove`) can do it.
        return Err(UiError::Conflict(
            "you cannot delete yourself here: ask another administrator".into(),
        ));
    }
    state
        .admin
        .execute(
            &viewer.origin,
            &viewer.actor(),
            Command::RemoveUser { user: name },
        )
        .await?;
    Ok(see_other("/admin?done=user-deleted#users"))
}
