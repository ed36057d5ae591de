//! `/n/<namespace>`: the settings of a whole namespace (visibility,
//! immutable-tag rules, retention, for it and the repositories within it)
//! and its storage quota, usage against limit as a bar. For its owner,
//! members and administrators, as `admin`'s quota command decides; to
//! anyone else it does not exist. Its owner and organization admins get the
//! policy forms, administrators also the quota's; `Admin::execute` checks
//! each change again as the viewer.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::super::input::{BadPath, UiPath};
use super::super::input::{UiForm, UiQuery};
use super::super::{UiError, UiState, Viewer, format, paths, render, see_other};
use super::account::shown;
use super::layout::Layout;
use super::manage::{
    DoneQuery, PolicyForm, PolicyView, execute, notice, policy_command, refusal_status,
};
use crate::admin::{AdminError, Command};
use crate::policy::{parse_size, quotas};

#[derive(askama::Template)]
#[template(path = "namespace.html")]
struct NamespacePage {
    layout: Layout,
    name: String,
    policies: PolicyView,
    quota: QuotaBar,
    /// Only administrators set limits.
    sets_quota: bool,
}

/// Usage against the limit, as the bar and the sentence beside it say it.
struct QuotaBar {
    used: String,
    used_bytes: u64,
    /// `None`: no limit.
    limit: Option<String>,
    limit_bytes: u64,
    /// The bar's value: usage, at most the limit (a limit lowered below
    /// what is stored leaves the namespace over it).
    value: u64,
    percent: u64,
    over: bool,
}

/// What the quota command shows.
#[derive(Deserialize)]
struct ShownQuota {
    used_bytes: u64,
    limit_bytes: Option<u64>,
}

impl QuotaBar {
    fn new(quota: ShownQuota) -> QuotaBar {
        let limit = quota.limit_bytes.unwrap_or(0);
        let percent = match limit {
            0 if quota.used_bytes == 0 => 0,
            0 => 100,
            limit => ((u128::from(quota.used_bytes) * 100) / u128::from(limit)) as u64,
        };
        QuotaBar {
            used: format::size(quota.used_bytes),
            used_bytes: quota.used_bytes,
            limit: quota.limit_bytes.map(format::size),
            limit_bytes: limit,
            value: quota.used_bytes.min(limit),
            percent,
            over: quota.limit_bytes.is_some() && quota.used_bytes > limit,
        }
    }
}

fn no_such_namespace() -> UiError {
    UiError::NotFound("there is no such namespace, or you may not see it".into())
}

/// The page of `namespace` for `viewer`, or `NotFound` when it is no
/// namespace or not one they may see.
async fn page(state: &UiState, viewer: &Viewer, namespace: &str) -> Result<NamespacePage, UiError> {
    quotas::check_namespace(namespace).map_err(|_| no_such_namespace())?;
    let command = Command::ShowQuota {
        namespace: namespace.to_string(),
    };
    let quota = match state
        .admin
        .execute(&viewer.origin, &viewer.actor(), command)
        .await
    {
        Ok(outcome) => serde_json::from_value::<ShownQuota>(shown(outcome))
            .map_err(|e| UiError::Internal(format!("quota view: {e}")))?,
        Err(AdminError::Forbidden(_)) => return Err(no_such_namespace()),
        Err(e) => return Err(e.into()),
    };
    Ok(NamespacePage {
        layout: Layout::for_viewer(viewer),
        name: namespace.to_string(),
        policies: PolicyView::of_namespace(state, viewer, namespace).await?,
        quota: QuotaBar::new(quota),
        sets_quota: viewer.is_admin(),
    })
}

/// Signed in, or authentication off; else the sign-in page, back here after.
fn sign_in_first(viewer: &Viewer, namespace: &str) -> Option<Response> {
    if viewer.open || viewer.name().is_some() {
        return None;
    }
    let here = paths::namespace(namespace);
    let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
    Some(see_other(&format!("/sign-in?next={next}")))
}

/// `GET /n/<namespace>`.
pub async fn show(
    State(state): State<UiState>,
    viewer: Viewer,
    namespace: Result<UiPath<String>, BadPath>,
    UiQuery(query): UiQuery<DoneQuery>,
) -> Result<Response, UiError> {
    let UiPath(namespace) = namespace.map_err(|_| no_such_namespace())?;
    if let Some(redirect) = sign_in_first(&viewer, &namespace) {
        return Ok(redirect);
    }
    let mut page = page(&state, &viewer, &namespace).await?;
    page.policies.notice = notice(query.done());
    render(&page)
}

/// The command a namespace's form asks for: a policy form's, or the quota's.
fn namespace_command(
    namespace: &str,
    action: &str,
    form: &PolicyForm,
) -> Result<(Command, &'static str), UiError> {
    let namespace = namespace.to_string();
    match action {
        "set-quota" => {
            let limit = parse_size(&form.limit)?;
            Ok((
                Command::SetQuota {
                    namespace,
                    limit: Some(limit),
                },
                "quota-set",
            ))
        }
        "remove-quota" => Ok((
            Command::SetQuota {
                namespace,
                limit: None,
            },
            "quota-removed",
        )),
        action => policy_command(&namespace, action, form),
    }
}

/// `POST /n/<namespace>/<action>`: one of the page's forms.
pub async fn act(
    State(state): State<UiState>,
    viewer: Viewer,
    names: Result<UiPath<(String, String)>, BadPath>,
    UiForm(form): UiForm<PolicyForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&form.csrf)?;
    let UiPath((namespace, action)) = names.map_err(|_| no_such_namespace())?;
    // A namespace the viewer may not see has nothing to change.
    page(&state, &viewer, &namespace).await?;
    let result = match namespace_command(&namespace, &action, &form) {
        Err(no_such_form @ UiError::NotFound(_)) => return Err(no_such_form),
        Err(invalid) => Err(invalid),
        Ok((command, done)) => execute(&state, &viewer, command).await.map(|()| done),
    };
    match result {
        Ok(done) => Ok(see_other(&format!(
            "{}?done={done}",
            paths::namespace(&namespace)
        ))),
        Err(error) => {
            let Some(status) = refusal_status(&error) else {
                return Err(error);
            };
            let mut page = page(&state, &viewer, &namespace).await?;
            form.draft(&mut page.policies);
            page.policies.error = Some(error.to_string());
            Ok((status, render(&page)?).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(used_bytes: u64, limit_bytes: Option<u64>) -> QuotaBar {
        QuotaBar::new(ShownQuota {
            used_bytes,
            limit_bytes,
        })
    }

    #[test]
    fn the_bar_is_usage_against_the_limit_and_never_past_it() {
        let half = bar(500, Some(1000));
        assert_eq!((half.value, half.percent, half.over), (500, 50, false));
        assert_eq!(half.limit.as_deref(), Some("1.0 kB"));
        let over = bar(1500, Some(1000));
        assert_eq!((over.value, over.percent, over.over), (1000, 150, true));
        let zero = bar(10, Some(0));
        assert_eq!((zero.value, zero.percent, zero.over), (0, 100, true));
        let unlimited = bar(10, None);
        assert_eq!((unlimited.limit, unlimited.over), (None, false));
        let huge = bar(u64::MAX, Some(u64::MAX));
        assert_eq!(huge.percent, 100);
    }

    #[test]
    fn quota_forms_become_commands() {
        let form = |limit: &str| -> PolicyForm {
            serde_urlencoded::from_str(&serde_urlencoded::to_string([("limit", limit)]).unwrap())
                .unwrap()
        };
        let (command, done) = namespace_command("team", "set-quota", &form("10GiB")).unwrap();
        assert!(matches!(command, Command::SetQuota { limit: Some(l), .. } if l == 10 << 30));
        assert_eq!(done, "quota-set");
        assert!(matches!(
            namespace_command("team", "set-quota", &form("lots")),
            Err(UiError::Invalid(_))
        ));
        let (command, _) = namespace_command("team", "remove-quota", &form("")).unwrap();
        assert!(matches!(command, Command::SetQuota { limit: None, .. }));
    }
}
