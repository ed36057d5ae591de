//! The account page and organization pages: a token made on the page logs
//! in at `/token` and is revoked from it; a password change checks the
//! current password and signs out; only an organization's admins change
//! its members, whatever a form posted by hand says.

use reqwest::StatusCode;

use crate::harness::{ADMIN_PASSWORD, TestApp};
use crate::secured_backend_tests;
use crate::support::*;
use crate::ui_support::{WebClient, field_value};

secured_backend_tests!(
    a_token_made_on_the_account_page_logs_in_until_revoked,
    a_password_change_checks_the_current_password_and_signs_out,
    only_an_organizations_admins_change_its_members,
    anonymous_visitors_are_sent_to_sign_in,
);

async fn signed_in(app: &TestApp, user: &str, password: &str) -> WebClient {
    let web = WebClient::new(app);
    web.sign_in(user, password).await;
    web
}

/// The value of the `data-copy` attribute that starts with `prefix`.
fn copied(html: &str, prefix: &str) -> String {
    let marker = format!("data-copy=\"{prefix}");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {prefix}: {html}"))
        + 11;
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

async fn a_token_made_on_the_account_page_logs_in_until_revoked(app: TestApp) {
    create_user(&app, "alice", "alice-password").await;
    let web = signed_in(&app, "alice", "alice-password").await;
    let csrf = web.csrf_of("/account").await;
    let created = web
        .post_form(
            "/account/tokens",
            &[
                ("csrf", &csrf),
                ("description", "CI <for> web"),
                ("repository", "alice/web"),
                ("actions", "pull"),
                ("actions", "push"),
                ("scopes", " repository:alice/docs:pull "),
                ("expires", "30d"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::OK);
    let page = created.text().await.unwrap();
    let secret = copied(&page, "berth_pat_");
    assert!(page.contains("shown only this once"), "{page}");
    assert!(page.contains("CI &#60;for&#62; web"), "escaped: {page}");
    assert!(
        page.contains("docker login -u alice --password-stdin 127.0.0.1:"),
        "{page}"
    );
    assert!(
        page.contains("repository:alice/docs:pull repository:alice/web:pull,push"),
        "{page}"
    );

    let registry_token = token(
        &app,
        Some(("alice", &secret)),
        &["repository:alice/web:pull,push", "repository:alice/db:pull"],
    )
    .await;
    assert_eq!(
        claims(&registry_token)["access"],
        serde_json::json!([{"type": "repository", "name": "alice/web", "actions": ["pull", "push"]}])
    );

    // Listed (never with its secret), then revoked after a confirmation.
    let account = web.page("/account").await;
    assert!(account.contains("CI &#60;for&#62; web"), "{account}");
    assert!(account.contains("active"), "{account}");
    assert!(!account.contains(&secret), "the secret is shown once only");
    assert!(
        account.contains("data-confirm=\"Revoke this token?"),
        "{account}"
    );
    let start = account.find("action=\"/account/tokens/").unwrap() + 8;
    let action = &account[start..start + account[start..].find('"').unwrap()];
    let revoked = web.post_form(action, &[("csrf", &csrf)]).await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header(&revoked, "location"),
        "/account?done=token-revoked#tokens"
    );
    let account = web.page("/account?done=token-revoked").await;
    assert!(
        account.contains("The access token was revoked"),
        "{account}"
    );
    assert!(account.contains("revoked"), "{account}");
    let refused = request_token(&app, Some(("alice", &secret)), &[]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // A token needs a scope, and a duration it can read.
    for (fields, message) in [
        (vec![("expires", "30d")], "at least one scope"),
        (
            vec![("repository", "alice/web"), ("expires", "soon")],
            "tick at least one action",
        ),
        (
            vec![
                ("repository", "alice/web"),
                ("actions", "pull"),
                ("expires", "soon"),
            ],
            "not a duration",
        ),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let refused = web.post_form("/account/tokens", &form).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{message}");
        let page = refused.text().await.unwrap();
        assert!(page.contains(message), "{message}: {page}");
    }
}

async fn a_password_change_checks_the_current_password_and_signs_out(app: TestApp) {
    create_user(&app, "alice", "alice-password").await;
    let web = signed_in(&app, "alice", "alice-password").await;
    let csrf = web.csrf_of("/account").await;
    let change = |current: &'static str, new: &'static str, repeat: &'static str| {
        let csrf = csrf.clone();
        let web = &web;
        async move {
            web.post_form(
                "/account/password",
                &[
                    ("csrf", &csrf),
                    ("current", current),
                    ("new", new),
                    ("repeat", repeat),
                ],
            )
            .await
        }
    };
    for (response, status, message) in [
        (
            change("wrong-password", "a-new-password", "a-new-password").await,
            StatusCode::UNAUTHORIZED,
            "the current password is incorrect",
        ),
        (
            change("alice-password", "a-new-password", "another-one").await,
            StatusCode::BAD_REQUEST,
            "differ",
        ),
        (
            change("alice-password", "short", "short").await,
            StatusCode::BAD_REQUEST,
            "at least 8 characters",
        ),
    ] {
        assert_eq!(response.status(), status, "{message}");
        let page = response.text().await.unwrap();
        assert!(page.contains(message), "{message}: {page}");
    }
    // An access token is not the password, though it logs in to the
    // registry: a borrowed session could make one and take the account.
    let made = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth("alice", Some("alice-password"))
        .json(&serde_json::json!({"scopes": ["repository:alice/web:pull"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let secret = made.json_value().await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let with_token = web
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", &secret),
                ("new", "a-new-password"),
                ("repeat", "a-new-password"),
            ],
        )
        .await;
    assert_eq!(with_token.status(), StatusCode::UNAUTHORIZED);
    let page = with_token.text().await.unwrap();
    assert!(page.contains("the current password is incorrect"), "{page}");
    // A token made to expire past the end of time is refused, not wrapped.
    let forever = web
        .post_form(
            "/account/tokens",
            &[
                ("csrf", &csrf),
                ("repository", "alice/web"),
                ("actions", "pull"),
                ("expires", "9223372036000000000s"),
            ],
        )
        .await;
    assert_eq!(forever.status(), StatusCode::BAD_REQUEST);
    let page = forever.text().await.unwrap();
    assert!(page.contains("too far away"), "{page}");
    // Still signed in after the refusals.
    web.page("/account").await;

    let changed = change("alice-password", "a-new-password", "a-new-password").await;
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    let location = header(&changed, "location").to_string();
    assert!(
        location.starts_with("/sign-in?done=password-changed"),
        "{location}"
    );
    assert_eq!(web.cookie("berth_session"), None);
    let notice = web.page(&location).await;
    assert!(notice.contains("Your password was changed"), "{notice}");
    let account = web.get("/account").await;
    assert_eq!(account.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        request_token(&app, Some(("alice", "alice-password")), &[])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    web.sign_in("alice", "a-new-password").await;
    web.page("/account").await;
}

async fn only_an_organizations_admins_change_its_members(app: TestApp) {
    for user in ["alice", "bob", "carol"] {
        create_user(&app, user, &format!("{user}-password")).await;
    }
    let alice = signed_in(&app, "alice", "alice-password").await;
    let csrf = alice.csrf_of("/account").await;
    let created = alice
        .post_form("/account/orgs", &[("csrf", &csrf), ("name", "team")])
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header(&created, "location"),
        "/orgs/team?done=organization-created"
    );
    let added = alice
        .post_form(
            "/orgs/team/members",
            &[("csrf", &csrf), ("user", "bob"), ("role", "read")],
        )
        .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let page = alice.page("/orgs/team").await;
    assert!(page.contains("<th scope=\"row\">bob</th>"), "{page}");
    assert!(page.contains("Add a member"), "{page}");
    assert!(alice.page("/account").await.contains("href=\"/orgs/team\""));

    // A member who is not an admin sees the members, and no controls.
    let bob = signed_in(&app, "bob", "bob-password").await;
    let page = bob.page("/orgs/team").await;
    assert!(page.contains("<th scope=\"row\">alice</th>"), "{page}");
    assert!(!page.contains("Add a member"), "{page}");
    assert!(!page.contains("/remove"), "{page}");
    let bob_csrf = bob.csrf_of("/account").await;
    let carol = signed_in(&app, "carol", "carol-password").await;
    let carol_csrf = carol.csrf_of("/account").await;
    // Posting the forms by hand changes nothing.
    for (web, csrf) in [(&bob, &bob_csrf), (&carol, &carol_csrf)] {
        let promoted = web
            .post_form(
                "/orgs/team/members",
                &[("csrf", csrf), ("user", "carol"), ("role", "admin")],
            )
            .await;
        assert_eq!(promoted.status(), StatusCode::FORBIDDEN);
        let removed = web
            .post_form("/orgs/team/members/alice/remove", &[("csrf", csrf)])
            .await;
        assert_eq!(removed.status(), StatusCode::FORBIDDEN);
    }
    // To a stranger the organization is not there.
    assert_eq!(
        carol.get("/orgs/team").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        carol.get("/orgs/nonexistent").await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(!alice.page("/orgs/team").await.contains("carol"));

    // The admin changes a role and removes a member; an unknown user is said so.
    let promoted = alice
        .post_form(
            "/orgs/team/members",
            &[("csrf", &csrf), ("user", "bob"), ("role", "write")],
        )
        .await;
    assert_eq!(promoted.status(), StatusCode::SEE_OTHER);
    assert!(
        bob.page("/account").await.contains("<td>write</td>"),
        "bob's rights are read afresh"
    );
    let unknown = alice
        .post_form(
            "/orgs/team/members",
            &[("csrf", &csrf), ("user", "nobody"), ("role", "read")],
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.text().await.unwrap().contains("no user `nobody`"));
    let removed = alice
        .post_form("/orgs/team/members/bob/remove", &[("csrf", &csrf)])
        .await;
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert_eq!(bob.get("/orgs/team").await.status(), StatusCode::NOT_FOUND);

    // An administrator manages any organization.
    let admin = signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let page = admin.page("/orgs/team").await;
    let admin_csrf = field_value(&page, "csrf").unwrap();
    let added = admin
        .post_form(
            "/orgs/team/members",
            &[("csrf", &admin_csrf), ("user", "carol"), ("role", "read")],
        )
        .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    assert!(
        carol
            .page("/orgs/team")
            .await
            .contains("<th scope=\"row\">carol</th>")
    );
}

async fn anonymous_visitors_are_sent_to_sign_in(app: TestApp) {
    let web = WebClient::new(&app);
    for (path, next) in [("/account", "%2Faccount"), ("/orgs/team", "%2Forgs%2Fteam")] {
        let response = web.get(path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(
            header(&response, "location"),
            format!("/sign-in?next={next}")
        );
    }
    for path in ["/account/tokens", "/account/password", "/orgs/team/members"] {
        let refused = web.post_form(path, &[("csrf", "")]).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
    }
}
