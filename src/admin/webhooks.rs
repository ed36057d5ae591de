//! The commands on webhook endpoints and the audit log: a namespace's
//! endpoints are managed by its owner, the admins of its organization and
//! administrators; the config file's (namespace `""`) are only listed and
//! tried, by administrators. The audit log is read by administrators, and
//! by a namespace's admins for that namespace.

use serde_json::json;

use super::command::{AuditQuery, NewWebhook};
use super::outcome::{Outcome, when};
use super::{
    Actor, Admin, AdminError, AdminResult, is_admin, require_admin, require_namespace_admin,
};
use crate::metadata::{AuditFilter, Endpoint, EndpointSpec, Origin};
use crate::oci::name::namespace_of;

/// The most audit rows one page holds.
const MAX_AUDIT_PAGE: u32 = 500;
/// Deliveries listed per endpoint.
const DELIVERIES_SHOWN: u32 = 100;

fn require_webhook_admin(actor: &Actor, namespace: &str) -> AdminResult<()> {
    if namespace.is_empty() {
        require_admin(actor)
    } else {
        require_namespace_admin(actor, namespace, "its webhooks")?;
        if namespace_of(namespace) != namespace {
            return Err(AdminError::Invalid(format!(
                "`{namespace}` is not a namespace"
            )));
        }
        Ok(())
    }
}

/// An endpoint as `/api/v1` shows it: never its secret.
fn view(endpoint: &Endpoint) -> serde_json::Value {
    let spec = &endpoint.spec;
    json!({
        "namespace": spec.namespace,
        "name": spec.name,
        "url": spec.url,
        "format": spec.format.as_str(),
        "repositories": spec.repositories,
        "actions": spec.actions,
        "ignore_media_types": spec.ignore_media_types,
        "headers": spec.headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        "timeout_ms": spec.timeout_ms,
        "origin": endpoint.origin,
        "created_at": endpoint.created_at,
    })
}

fn line(endpoint: &Endpoint) -> String {
    let spec = &endpoint.spec;
    let namespace = if spec.namespace.is_empty() {
        "(config)"
    } else {
        &spec.namespace
    };
    format!(
        "{namespace}\t{}\t{}\t{}\t{}",
        spec.name,
        spec.url,
        spec.format.as_str(),
        if spec.actions.is_empty() {
            "all but pulls".to_string()
        } else {
            spec.actions.join(",")
        }
    )
}

/// A time filter: RFC 3339 or Unix seconds, as milliseconds.
fn parse_time(key: &str, text: &str) -> AdminResult<i64> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds.saturating_mul(1000));
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            AdminError::Invalid(format!("`{key}` must be an RFC 3339 time or Unix seconds"))
        })
}

/// An audit filter's action: dotted lowercase words.
fn check_action(action: &str) -> AdminResult<()> {
    let valid = !action.is_empty()
        && action.len() <= 64
        && action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "`{action}` is not an audit action"
        )))
    }
}

impl Admin {
    async fn endpoint_of(&self, namespace: &str, name: &str) -> AdminResult<Endpoint> {
        self.events
            .endpoint(namespace, name)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no webhook `{name}`")))
    }

    pub(super) async fn webhooks(
        &self,
        actor: &Actor,
        namespace: Option<&str>,
    ) -> AdminResult<Outcome> {
        match namespace {
            Some(namespace) => require_webhook_admin(actor, namespace)?,
            None => require_admin(actor)?,
        }
        let endpoints = self.events.endpoints(namespace).await?;
        let lines = endpoints.iter().map(line).collect();
        let views: Vec<_> = endpoints.iter().map(view).collect();
        Ok(Outcome::shown(json!({ "webhooks": views }), lines))
    }

    pub(super) async fn add_webhook(&self, actor: &Actor, new: NewWebhook) -> AdminResult<Outcome> {
        if new.namespace.is_empty() {
            return Err(AdminError::Invalid(
                "endpoints for every namespace are written in the config file's [[webhooks]]"
                    .into(),
            ));
        }
        require_webhook_admin(actor, &new.namespace)?;
        let generated = new.secret.is_none();
        let mut spec = EndpointSpec {
            namespace: new.namespace,
            name: new.name,
            url: new.url,
            secret: new
                .secret
                .unwrap_or_else(crate::events::signature::new_secret),
            format: new.format,
            repositories: new.repositories,
            actions: new.actions,
            ignore_media_types: new.ignore_media_types,
            headers: new.headers.into_iter().collect(),
            timeout_ms: new
                .timeout
                .map_or(5000, |t| t.as_millis().min(i64::MAX as u128) as i64),
        };
        crate::events::endpoint::check(&mut spec).map_err(AdminError::Invalid)?;
        let (namespace, name, secret) = (
            spec.namespace.clone(),
            spec.name.clone(),
            spec.secret.clone(),
        );
        if !self.events.create_endpoint(spec).await? {
            return Err(AdminError::Conflict(format!(
                "`{namespace}` already has a webhook `{name}`"
            )));
        }
        let endpoint = self.endpoint_of(&namespace, &name).await?;
        let mut shown = view(&endpoint);
        let mut lines = vec![line(&endpoint)];
        if generated {
            // Shown once: it is needed to check signatures.
            shown["secret"] = secret.clone().into();
            lines.push(format!("secret\t{secret}"));
        }
        Ok(Outcome::created(
            shown,
            format!("webhook `{name}` of `{namespace}` created"),
            lines,
        ))
    }

    pub(super) async fn remove_webhook(
        &self,
        actor: &Actor,
        namespace: &str,
        name: &str,
    ) -> AdminResult<Outcome> {
        require_webhook_admin(actor, namespace)?;
        if namespace.is_empty() {
            return Err(AdminError::Invalid(
                "the config file's webhooks are removed from the config file".into(),
            ));
        }
        if !self.events.remove_endpoint(namespace, name).await? {
            return Err(AdminError::NotFound(format!("no webhook `{name}`")));
        }
        Ok(Outcome::changed(format!("webhook `{name}` removed")))
    }

    pub(super) async fn deliveries(
        &self,
        actor: &Actor,
        namespace: &str,
        name: &str,
        dead_only: bool,
    ) -> AdminResult<Outcome> {
        require_webhook_admin(actor, namespace)?;
        let endpoint = self.endpoint_of(namespace, name).await?;
        let deliveries = self
            .events
            .deliveries(endpoint.id, dead_only, DELIVERIES_SHOWN)
            .await?;
        let lines = deliveries
            .iter()
            .map(|d| {
                format!(
                    "{}\t{}\t{:?}\t{}\t{}\t{}\t{}",
                    d.id,
                    d.event_id,
                    d.state,
                    d.action,
                    d.repository,
                    d.last_status.map_or("-".into(), |s| s.to_string()),
                    d.last_error.as_deref().unwrap_or("")
                )
            })
            .collect();
        Ok(Outcome::shown(json!({ "deliveries": deliveries }), lines))
    }

    pub(super) async fn test_webhook(
        &self,
        origin: &Origin,
        actor: &Actor,
        namespace: &str,
        name: &str,
    ) -> AdminResult<Outcome> {
        require_webhook_admin(actor, namespace)?;
        let endpoint = self.endpoint_of(namespace, name).await?;
        let repository = if namespace.is_empty() {
            "berth/test".to_string()
        } else {
            format!("{namespace}/test")
        };
        let id = self
            .events
            .queue_test(origin.clone(), endpoint.id, repository)
            .await?;
        Ok(Outcome::created(
            json!({ "event_id": id }),
            format!("test event {id} queued for `{name}`"),
            vec![id],
        ))
    }

    pub(super) async fn redeliver(
        &self,
        actor: &Actor,
        namespace: &str,
        name: &str,
        delivery: i64,
    ) -> AdminResult<Outcome> {
        require_webhook_admin(actor, namespace)?;
        let endpoint = self.endpoint_of(namespace, name).await?;
        if !self.events.redeliver(endpoint.id, delivery).await? {
            return Err(AdminError::NotFound(format!(
                "no dead delivery {delivery} for `{name}`"
            )));
        }
        Ok(Outcome::changed(format!(
            "delivery {delivery} queued again"
        )))
    }

    pub(super) async fn read_audit(
        &self,
        actor: &Actor,
        query: AuditQuery,
    ) -> AdminResult<Outcome> {
        let namespace = match (&query.namespace, &query.repository) {
            (Some(namespace), _) => Some(namespace.clone()),
            (None, Some(repository)) => Some(namespace_of(repository).to_string()),
            (None, None) => None,
        };
        if !is_admin(actor) {
            let Some(namespace) = &namespace else {
                return Err(AdminError::Forbidden(
                    "only an administrator may read the whole audit log: name a namespace you administer".into(),
                ));
            };
            require_namespace_admin(actor, namespace, "or read its audit log")?;
        }
        for name in [&namespace, &query.repository].into_iter().flatten() {
            crate::policy::check_path(name)?;
        }
        if let Some(repository) = &query.repository
            && namespace.as_deref() != Some(namespace_of(repository))
        {
            return Err(AdminError::Invalid(
                "the repository is not in the namespace".into(),
            ));
        }
        if let Some(actor) = &query.actor
            && (actor.len() > 64 || actor.parse::<crate::oci::RepositoryName>().is_err())
        {
            return Err(AdminError::Invalid(format!("`{actor}` is not a user name")));
        }
        if let Some(action) = &query.action {
            check_action(action)?;
        }
        let limit = query.n.unwrap_or(100).clamp(1, MAX_AUDIT_PAGE);
        let filter = AuditFilter {
            actor: query.actor,
            // A repository's rows are found by it alone; a namespace's by the namespace.
            namespace: if query.repository.is_some() {
                None
            } else {
                namespace
            },
            repository: query.repository,
            action: query.action,
            since_ms: query
                .since
                .as_deref()
                .map(|t| parse_time("since", t))
                .transpose()?,
            until_ms: query
                .until
                .as_deref()
                .map(|t| parse_time("until", t))
                .transpose()?,
            before: query.before,
            after: None,
            limit,
        };
        let rows = self.events.audit(filter).await?;
        let next = (rows.len() as u32 == limit)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        let lines = rows
            .iter()
            .map(|r| {
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    when(r.at_ms / 1000),
                    r.action,
                    r.outcome,
                    r.actor.as_deref().unwrap_or("-"),
                    r.auth_method,
                    r.repository
                        .as_deref()
                        .or(r.namespace.as_deref())
                        .unwrap_or("-"),
                    r.target.as_deref().unwrap_or("")
                )
            })
            .collect();
        Ok(Outcome::shown(
            json!({ "entries": rows, "next": next }),
            lines,
        ))
    }
}
