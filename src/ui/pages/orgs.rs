//! `/orgs/<org>`: an organization's members and their roles, for its
//! members and administrators (to anyone else it does not exist); its
//! admins (and administrators) add members, change roles and remove
//! members, each an `admin::Command` run as the viewer, which checks the
//! right again whatever the page showed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::super::input::{BadPath, UiPath};
use super::super::input::{UiForm, UiQuery};
use super::super::{UiError, UiState, Viewer, render, see_other};
use super::account::{shown, signed_in};
use super::layout::Layout;
use crate::admin::{AdminError, Command};
use crate::auth::Role;

#[derive(askama::Template)]
#[template(path = "org.html")]
struct OrganizationPage {
    layout: Layout,
    name: String,
    members: Vec<MemberRow>,
    /// The viewer may change the members.
    manages: bool,
    notice: Option<&'static str>,
    error: Option<String>,
}

struct MemberRow {
    user: String,
    role: String,
    /// Each role, and whether it is this member's, for the role menu.
    roles: Vec<(&'static str, bool)>,
}

#[derive(Deserialize)]
struct ListedOrganization {
    name: String,
    members: Vec<ListedMember>,
}

#[derive(Deserialize)]
struct ListedMember {
    user: String,
    role: String,
}

const ROLES: [Role; 3] = [Role::Read, Role::Write, Role::Admin];

#[derive(Deserialize)]
pub struct OrganizationQuery {
    #[serde(default)]
    done: String,
}

fn notice(done: &str) -> Option<&'static str> {
    match done {
        "organization-created" => Some("The organization was created, with you as its admin."),
        "member-set" => Some("The member's role is saved."),
        "member-removed" => Some("The member was removed."),
        _ => None,
    }
}

fn no_such_organization() -> UiError {
    UiError::NotFound("there is no such organization".into())
}

fn may_manage(viewer: &Viewer, organization: &str) -> bool {
    viewer.is_admin()
        || viewer
            .principal
            .memberships
            .iter()
            .any(|(o, role)| o == organization && *role == Role::Admin)
}

/// The organization as the viewer may see it: the listing command shows
/// administrators every organization and anyone else their own, so one
/// absent from it is, to this viewer, no organization at all.
async fn organization(
    state: &UiState,
    viewer: &Viewer,
    name: &str,
) -> Result<ListedOrganization, UiError> {
    let listed = shown(
        state
            .admin
            .execute(&viewer.origin, &viewer.actor(), Command::ListOrganizations)
            .await?,
    );
    let organizations: Vec<ListedOrganization> =
        serde_json::from_value(listed["organizations"].clone())
            .map_err(|e| UiError::Internal(format!("organization listing: {e}")))?;
    organizations
        .into_iter()
        .find(|o| o.name == name)
        .ok_or_else(no_such_organization)
}

async fn page(
    state: &UiState,
    viewer: &Viewer,
    name: &str,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Result<OrganizationPage, UiError> {
    let organization = organization(state, viewer, name).await?;
    let members = organization
        .members
        .into_iter()
        .map(|m| MemberRow {
            roles: ROLES
                .iter()
                .map(|r| (r.as_str(), r.as_str() == m.role))
                .collect(),
            user: m.user,
            role: m.role,
        })
        .collect();
    Ok(OrganizationPage {
        layout: Layout::for_viewer(viewer),
        manages: may_manage(viewer, name),
        name: organization.name,
        members,
        notice,
        error,
    })
}

pub async fn show(
    State(state): State<UiState>,
    viewer: Viewer,
    name: Result<UiPath<String>, BadPath>,
    UiQuery(query): UiQuery<OrganizationQuery>,
) -> Result<Response, UiError> {
    let UiPath(name) = name.map_err(|_| no_such_organization())?;
    if let Err(redirect) = signed_in(&viewer, &format!("/orgs/{name}")) {
        return Ok(*redirect);
    }
    render(&page(&state, &viewer, &name, notice(&query.done), None).await?)
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    role: String,
}

/// What a refused change shows: the page again with the reason, or (for
/// one the viewer may not make, or an organization they cannot see) the
/// error page.
async fn refused(
    state: &UiState,
    viewer: &Viewer,
    organization: &str,
    error: AdminError,
) -> Result<Response, UiError> {
    let status = match &error {
        AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
        AdminError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => return Err(error.into()),
    };
    let page = page(state, viewer, organization, None, Some(error.to_string())).await?;
    Ok((status, render(&page)?).into_response())
}

/// Adds a member, or changes a member's role.
pub async fn set_member(
    State(state): State<UiState>,
    viewer: Viewer,
    name: Result<UiPath<String>, BadPath>,
    UiForm(form): UiForm<MemberForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.signed_in()?;
    let UiPath(organization) = name.map_err(|_| no_such_organization())?;
    let command = Command::SetMember {
        organization: organization.clone(),
        user: form.user.trim().to_string(),
        role: form.role,
    };
    match state
        .admin
        .execute(&viewer.origin, &viewer.actor(), command)
        .await
    {
        Ok(_) => Ok(see_other(&format!("/orgs/{organization}?done=member-set"))),
        Err(e) => refused(&state, &viewer, &organization, e).await,
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
}

pub async fn remove_member(
    State(state): State<UiState>,
    viewer: Viewer,
    names: Result<UiPath<(String, String)>, BadPath>,
    UiForm(form): UiForm<RemoveForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.signed_in()?;
    let UiPath((organization, user)) = names.map_err(|_| no_such_organization())?;
    // Leaving an organization leaves its page too.
    let next = if viewer.name() == Some(user.as_str()) {
        "/account".to_string()
    } else {
        format!("/orgs/{organization}?done=member-removed")
    };
    let command = Command::RemoveMember {
        organization: organization.clone(),
        user,
    };
    match state
        .admin
        .execute(&viewer.origin, &viewer.actor(), command)
        .await
    {
        Ok(_) => Ok(see_other(&next)),
        Err(e) => refused(&state, &viewer, &organization, e).await,
    }
}
