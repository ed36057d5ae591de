//! The management pages: a tag or manifest deleted after a confirmation
//! step, visibility, immutable-tag rules and retention changed on a
//! repository's or namespace's settings page, a namespace's quota as a bar.
//! Who may do each is checked on the server: forms posted by hand with a
//! valid CSRF token are refused just as the page would not have offered them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_PASSWORD, TestApp};
use crate::secured_backend_tests;
use crate::support::*;
use crate::ui_support::WebClient;

secured_backend_tests!(
    a_tag_deleted_after_confirming_leaves_the_other_tags_of_its_digest,
    a_manifest_deleted_after_confirming_takes_its_tags,
    only_members_who_may_delete_get_the_control_or_the_delete,
    anonymous_and_stranger_posts_are_refused,
    making_a_repository_public_on_its_page_lets_anyone_pull,
    an_immutable_rule_added_on_the_page_stops_a_tag_moving,
    retention_set_on_the_page_is_the_collectors,
    the_namespace_page_shows_quota_usage_as_a_bar,
    pages_show_refused_markup_as_text,
);

const ALICE: (&str, &str) = ("alice", "alice-password");

async fn signed_in(app: &TestApp, (user, password): (&str, &str)) -> WebClient {
    let web = WebClient::new(app);
    web.sign_in(user, password).await;
    web
}

/// A registry token of `user` for everything on `repository`.
async fn token_for(app: &TestApp, (user, password): (&str, &str), repository: &str) -> String {
    token(
        app,
        Some((user, password)),
        &[&format!("repository:{repository}:pull,push,delete")],
    )
    .await
}

/// Pushes one image as `user` under each of `tags`; its digest.
async fn push_as(app: &mut TestApp, user: (&str, &str), repository: &str, tags: &[&str]) -> String {
    app.bearer = Some(token_for(app, user, repository).await);
    let manifest = push_image_blobs(app, repository, repository).await;
    for tag in tags {
        let pushed = put_manifest(app, repository, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(
            pushed.status(),
            StatusCode::CREATED,
            "push {repository}:{tag}"
        );
    }
    app.bearer = None;
    sha256(&manifest)
}

/// `/v2/<repository>/tags/list` as `user`: the tag names (none when it is gone).
async fn tags_of(app: &TestApp, user: (&str, &str), repository: &str) -> Vec<String> {
    let token = token_for(app, user, repository).await;
    let response = with_token(
        app,
        Method::GET,
        &format!("/v2/{repository}/tags/list"),
        &token,
    )
    .send()
    .await
    .unwrap();
    if response.status() == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json_value().await;
    serde_json::from_value(body["tags"].clone()).unwrap_or_default()
}

/// Posts `fields` and the session's CSRF token (read from `csrf_page`).
async fn post(
    web: &WebClient,
    csrf_page: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let csrf = web.csrf_of(csrf_page).await;
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    web.post_form(path, &form).await
}

fn location(response: &reqwest::Response) -> &str {
    header(response, "location")
}

async fn status_and_body(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    (status, response.text().await.unwrap())
}

fn api(app: &TestApp, user: (&str, &str), method: Method, path: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .basic_auth(user.0, Some(user.1))
}

async fn organization_with(app: &TestApp, members: &[(&str, &str)]) {
    let created = api(app, ALICE, Method::POST, "/api/v1/orgs")
        .json(&json!({"name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    for (user, role) in members {
        create_user(app, user, &format!("{user}-password")).await;
        let added = api(
            app,
            ALICE,
            Method::PUT,
            &format!("/api/v1/orgs/team/members/{user}"),
        )
        .json(&json!({ "role": role }))
        .send()
        .await
        .unwrap();
        assert_eq!(added.status(), StatusCode::NO_CONTENT);
    }
}

async fn a_tag_deleted_after_confirming_leaves_the_other_tags_of_its_digest(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    let digest = push_as(&mut app, ALICE, "alice/web", &["1.0", "latest", "stable"]).await;
    let web = signed_in(&app, ALICE).await;

    let confirm = web.page("/r/alice/web/-/delete?tag=1.0").await;
    assert!(confirm.contains("Delete the tag 1.0?"), "{confirm}");
    assert!(confirm.contains("removes only the tag"), "{confirm}");
    assert!(
        confirm.contains(&digest[7..19]),
        "names the manifest: {confirm}"
    );
    for stays in ["<code>latest</code>", "<code>stable</code>"] {
        assert!(confirm.contains(stays), "says {stays} stays: {confirm}");
    }
    assert!(confirm.contains(r#"name="tag" value="1.0""#), "{confirm}");
    assert!(
        confirm.contains(r#"href="/r/alice/web/-/tags/1.0">Cancel"#),
        "{confirm}"
    );
    // Nothing happens before the form is sent.
    assert_eq!(
        tags_of(&app, ALICE, "alice/web").await,
        ["1.0", "latest", "stable"]
    );

    let csrf = web.csrf(&confirm);
    let deleted = web
        .post_form("/r/alice/web/-/delete", &[("csrf", &csrf), ("tag", "1.0")])
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&deleted), "/r/alice/web?done=tag-deleted");
    assert_eq!(
        tags_of(&app, ALICE, "alice/web").await,
        ["latest", "stable"]
    );

    // The last tag: the page says the manifest becomes untagged.
    web.post_form(
        "/r/alice/web/-/delete",
        &[("csrf", &csrf), ("tag", "stable")],
    )
    .await;
    let last = web.page("/r/alice/web/-/delete?tag=latest").await;
    assert!(
        last.contains("No other tag points at that manifest"),
        "{last}"
    );

    // A tag that is not there, and nonsense, are no deletion to confirm.
    let (status, _) = status_and_body(web.get("/r/alice/web/-/delete?tag=1.0").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in [
        "",
        "?tag=bad%20tag",
        "?digest=sha256:zz",
        "?tag=latest&digest=sha256:00",
    ] {
        let (status, _) =
            status_and_body(web.get(&format!("/r/alice/web/-/delete{bad}")).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

async fn a_manifest_deleted_after_confirming_takes_its_tags(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    let digest = push_as(&mut app, ALICE, "alice/web", &["1.0", "latest"]).await;
    let web = signed_in(&app, ALICE).await;

    // An index listing it stands in the way, and the page says so.
    app.bearer = Some(token_for(&app, ALICE, "alice/web").await);
    let image = push_image_blobs(&app, "alice/web", "alice/web").await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &image)],
    })
    .to_string();
    let listed = put_manifest(&app, "alice/web", "multi", OCI_INDEX, index.as_bytes()).await;
    assert_eq!(listed.status(), StatusCode::CREATED);
    app.bearer = None;
    let index_digest = sha256(index.as_bytes());
    let path = format!("/r/alice/web/-/delete?digest={digest}");
    let blocked = web.page(&path).await;
    assert!(
        blocked.contains("cannot be deleted while an index lists it"),
        "{blocked}"
    );
    assert!(blocked.contains(&index_digest), "{blocked}");
    assert!(!blocked.contains(r#"name="digest""#), "no form: {blocked}");
    let csrf = web.csrf_of("/r/alice/web/-/settings").await;
    let refused = web
        .post_form(
            "/r/alice/web/-/delete",
            &[("csrf", &csrf), ("digest", &digest)],
        )
        .await;
    let (status, body) = status_and_body(refused).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body.contains("listed by index"),
        "the registry's reason: {body}"
    );
    assert_eq!(
        tags_of(&app, ALICE, "alice/web").await,
        ["1.0", "latest", "multi"]
    );

    // Without the index, the manifest goes with every tag on it.
    let index_page = web
        .page(&format!("/r/alice/web/-/delete?digest={index_digest}"))
        .await;
    assert!(index_page.contains("<code>multi</code>"), "{index_page}");
    web.post_form(
        "/r/alice/web/-/delete",
        &[("csrf", &csrf), ("digest", &index_digest)],
    )
    .await;
    let confirm = web.page(&path).await;
    assert!(confirm.contains("and every tag on it"), "{confirm}");
    for goes in ["<code>1.0</code>", "<code>latest</code>"] {
        assert!(confirm.contains(goes), "says {goes} goes: {confirm}");
    }
    let deleted = web
        .post_form(
            "/r/alice/web/-/delete",
            &[("csrf", &csrf), ("digest", &digest)],
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&deleted), "/r/alice/web?done=manifest-deleted");
    assert!(tags_of(&app, ALICE, "alice/web").await.is_empty());
    let token = token_for(&app, ALICE, "alice/web").await;
    let gone = with_token(
        &app,
        Method::GET,
        &format!("/v2/alice/web/manifests/{digest}"),
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

async fn only_members_who_may_delete_get_the_control_or_the_delete(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    organization_with(
        &app,
        &[("carol", "read"), ("bob", "write"), ("dave", "admin")],
    )
    .await;
    push_as(&mut app, ALICE, "team/app", &["1", "2"]).await;

    for reader in ["carol", "bob"] {
        let password = format!("{reader}-password");
        let web = signed_in(&app, (reader, &password)).await;
        // They may see the settings, with no form that changes them.
        let settings = web.page("/r/team/app/-/settings").await;
        assert!(!settings.contains("set-visibility"), "{reader}: {settings}");
        assert!(!settings.contains("add-immutable"), "{reader}: {settings}");
        let (status, body) = status_and_body(web.get("/r/team/app/-/delete?tag=1").await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{reader}");
        assert!(
            !body.contains(r#"name="tag""#),
            "{reader}: no delete form: {body}"
        );
        // A form posted by hand, with the session's valid token, is refused too.
        let csrf = web.csrf_of("/r/team/app/-/settings").await;
        let (status, body) = status_and_body(
            web.post_form("/r/team/app/-/delete", &[("csrf", &csrf), ("tag", "1")])
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{reader}: {body}");
        assert!(body.contains("you may not delete"), "{body}");
        let (status, _) = status_and_body(
            web.post_form(
                "/r/team/app/-/add-immutable",
                &[("csrf", &csrf), ("pattern", "v*")],
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{reader}");
    }
    assert_eq!(tags_of(&app, ALICE, "team/app").await, ["1", "2"]);

    // An admin of the organization may.
    let web = signed_in(&app, ("dave", "dave-password")).await;
    let confirm = web.page("/r/team/app/-/delete?tag=1").await;
    assert!(confirm.contains(r#"name="tag" value="1""#), "{confirm}");
    let settings = web.page("/r/team/app/-/settings").await;
    assert!(
        settings.contains("/r/team/app/-/add-immutable"),
        "{settings}"
    );
    let deleted = web
        .post_form(
            "/r/team/app/-/delete",
            &[("csrf", &web.csrf(&confirm)), ("tag", "1")],
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(tags_of(&app, ALICE, "team/app").await, ["2"]);
}

async fn anonymous_and_stranger_posts_are_refused(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    create_user(&app, "mallory", "mallory-password").await;
    push_as(&mut app, ALICE, "alice/web", &["1"]).await;

    let anonymous = WebClient::new(&app);
    for (path, fields) in [
        ("/r/alice/web/-/delete", vec![("tag", "1")]),
        ("/r/alice/web/-/set-visibility", vec![("public", "true")]),
        ("/n/alice/set-visibility", vec![("public", "true")]),
        ("/n/alice/set-quota", vec![("limit", "1GiB")]),
    ] {
        let mut with_blank_token = fields.clone();
        with_blank_token.push(("csrf", ""));
        for form in [fields, with_blank_token] {
            let (status, _) = status_and_body(anonymous.post_form(path, &form).await).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "anonymous {path}");
        }
    }
    // Pages anonymous visitors may not see: the namespace's asks to sign in,
    // a private repository's is no page.
    let sign_in = anonymous.get("/n/alice").await;
    assert_eq!(sign_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&sign_in), "/sign-in?next=%2Fn%2Falice");
    for path in ["/r/alice/web/-/settings", "/r/alice/web/-/delete?tag=1"] {
        assert_eq!(
            anonymous.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }

    // Someone signed in, with a valid token of their own, but no rights in
    // `alice`: a private repository's pages and forms are not there for them.
    let mallory = signed_in(&app, ("mallory", "mallory-password")).await;
    let csrf = mallory.csrf_of("/account").await;
    for path in [
        "/r/alice/web/-/settings",
        "/r/alice/web/-/delete?tag=1",
        "/n/alice",
    ] {
        assert_eq!(
            mallory.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    for (path, fields) in [
        (
            "/r/alice/web/-/delete",
            [("csrf", csrf.as_str()), ("tag", "1")],
        ),
        (
            "/r/alice/web/-/set-visibility",
            [("csrf", &csrf), ("public", "true")],
        ),
        (
            "/n/alice/set-visibility",
            [("csrf", &csrf), ("public", "true")],
        ),
        ("/n/alice/set-quota", [("csrf", &csrf), ("limit", "1")]),
    ] {
        let (status, _) = status_and_body(mallory.post_form(path, &fields).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "mallory {path}");
    }
    // Her own namespace is hers, except its quota, which administrators set.
    let own = mallory.page("/n/mallory").await;
    assert!(own.contains("/n/mallory/set-visibility"), "{own}");
    assert!(!own.contains("set-quota"), "{own}");
    let (status, _) = status_and_body(
        mallory
            .post_form(
                "/n/mallory/set-quota",
                &[("csrf", &csrf), ("limit", "1TiB")],
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An action no form has is no page.
    let (status, _) = status_and_body(
        mallory
            .post_form("/n/mallory/drop-everything", &[("csrf", &csrf)])
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(tags_of(&app, ALICE, "alice/web").await, ["1"]);
    let visibility = api(&app, ALICE, Method::GET, "/api/v1/visibility/alice/web")
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(visibility["public"], false, "{visibility}");
}

/// `GET /v2/<repository>/manifests/<tag>` with an anonymous token.
async fn anonymous_pull(app: &TestApp, repository: &str, tag: &str) -> StatusCode {
    let token = token(app, None, &[&format!("repository:{repository}:pull")]).await;
    with_token(
        app,
        Method::GET,
        &format!("/v2/{repository}/manifests/{tag}"),
        &token,
    )
    .header("accept", OCI_MANIFEST)
    .send()
    .await
    .unwrap()
    .status()
}

async fn making_a_repository_public_on_its_page_lets_anyone_pull(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    push_as(&mut app, ALICE, "alice/web", &["1"]).await;
    push_as(&mut app, ALICE, "alice/db", &["1"]).await;
    assert_eq!(
        anonymous_pull(&app, "alice/web", "1").await,
        StatusCode::UNAUTHORIZED
    );
    let web = signed_in(&app, ALICE).await;
    let private = web.page("/r/alice/web/-/settings").await;
    assert!(
        private.contains(r#"<span class="badge">private</span>"#),
        "{private}"
    );
    assert!(private.contains("Make alice/web public"), "{private}");

    let made = post(
        &web,
        "/r/alice/web/-/settings",
        "/r/alice/web/-/set-visibility",
        &[("public", "true")],
    )
    .await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&made),
        "/r/alice/web/-/settings?done=visibility-set"
    );
    let public = web.page(location(&made)).await;
    assert!(public.contains("The visibility is saved."), "{public}");
    assert!(public.contains("Make alice/web private"), "{public}");
    assert_eq!(anonymous_pull(&app, "alice/web", "1").await, StatusCode::OK);
    assert_eq!(
        anonymous_pull(&app, "alice/db", "1").await,
        StatusCode::UNAUTHORIZED
    );
    // Anyone may now read its visibility, with no form, but not the
    // namespace's rules, which are its members' business (as on /api/v1).
    let rule = api(
        &app,
        ALICE,
        Method::PUT,
        "/api/v1/immutable-tags/alice?pattern=release-*",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(rule.status(), StatusCode::NO_CONTENT);
    let visitor = WebClient::new(&app).page("/r/alice/web/-/settings").await;
    assert!(!visitor.contains("set-visibility"), "{visitor}");
    assert!(!visitor.contains("release-*"), "{visitor}");
    let member = web.page("/r/alice/web/-/settings").await;
    assert!(member.contains("release-*"), "{member}");

    // The whole namespace, from its page: the repository's says what makes it so.
    let made = post(
        &web,
        "/n/alice",
        "/n/alice/set-visibility",
        &[("public", "true")],
    )
    .await;
    assert_eq!(location(&made), "/n/alice?done=visibility-set");
    assert_eq!(anonymous_pull(&app, "alice/db", "1").await, StatusCode::OK);
    let via = web.page("/r/alice/db/-/settings").await;
    assert!(via.contains("because its namespace"), "{via}");
    assert!(
        via.contains(r#"<a href="/n/alice">alice</a> is public"#),
        "{via}"
    );
    assert!(
        !via.contains("Make alice/db private"),
        "made private on the namespace's page: {via}"
    );

    let made = post(
        &web,
        "/n/alice",
        "/n/alice/set-visibility",
        &[("public", "false")],
    )
    .await;
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        anonymous_pull(&app, "alice/db", "1").await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = status_and_body(
        post(
            &web,
            "/n/alice",
            "/n/alice/set-visibility",
            &[("public", "maybe")],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn an_immutable_rule_added_on_the_page_stops_a_tag_moving(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    push_as(&mut app, ALICE, "alice/web", &["v1"]).await;
    let web = signed_in(&app, ALICE).await;
    let added = post(
        &web,
        "/r/alice/web/-/settings",
        "/r/alice/web/-/add-immutable",
        &[("pattern", "v*")],
    )
    .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&added), "/r/alice/web/-/settings?done=rule-added");
    let settings = web.page(location(&added)).await;
    assert!(settings.contains("<code>v*</code>"), "{settings}");
    assert!(
        settings.contains("The immutable-tag rule was added."),
        "{settings}"
    );

    // A push moving the tag is refused by the registry.
    app.bearer = Some(token_for(&app, ALICE, "alice/web").await);
    let other = push_image_blobs(&app, "alice/web", "another image").await;
    let moved = put_manifest(&app, "alice/web", "v1", OCI_MANIFEST, &other).await;
    assert_error(moved, StatusCode::FORBIDDEN, "DENIED").await;
    app.bearer = None;

    // Deleting it: the page says why not, and a form sent anyway is refused
    // with the registry's reason.
    let confirm = web.page("/r/alice/web/-/delete?tag=v1").await;
    assert!(
        confirm.contains("is immutable by the rule `v*` on `alice/web`"),
        "{confirm}"
    );
    assert!(!confirm.contains(r#"name="tag""#), "{confirm}");
    let csrf = web.csrf(&settings);
    let (status, body) = status_and_body(
        web.post_form("/r/alice/web/-/delete", &[("csrf", &csrf), ("tag", "v1")])
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("cannot be deleted"), "{body}");

    // A rule on the namespace shows on the repository's page, set elsewhere.
    post(
        &web,
        "/n/alice",
        "/n/alice/add-immutable",
        &[("pattern", "release-*")],
    )
    .await;
    let settings = web.page("/r/alice/web/-/settings").await;
    assert!(settings.contains("<code>release-*</code>"), "{settings}");
    assert!(
        settings.contains(r#"<a href="/n/alice">alice</a>"#),
        "{settings}"
    );

    let removed = web
        .post_form(
            "/r/alice/web/-/remove-immutable",
            &[("csrf", &csrf), ("pattern", "v*")],
        )
        .await;
    assert_eq!(
        location(&removed),
        "/r/alice/web/-/settings?done=rule-removed"
    );
    app.bearer = Some(token_for(&app, ALICE, "alice/web").await);
    let moved = put_manifest(&app, "alice/web", "v1", OCI_MANIFEST, &other).await;
    assert_eq!(moved.status(), StatusCode::CREATED);
}

async fn retention_set_on_the_page_is_the_collectors(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    push_as(&mut app, ALICE, "alice/web", &["1"]).await;
    let web = signed_in(&app, ALICE).await;
    let none = web.page("/r/alice/web/-/settings").await;
    assert!(none.contains("every tag is kept"), "{none}");

    let set = post(
        &web,
        "/n/alice",
        "/n/alice/set-retention",
        &[("keep_last", "10"), ("keep_days", ""), ("exclude", "")],
    )
    .await;
    assert_eq!(location(&set), "/n/alice?done=retention-set");
    let set = post(
        &web,
        "/r/alice/web/-/settings",
        "/r/alice/web/-/set-retention",
        &[
            ("keep_last", "3"),
            ("keep_days", "30"),
            ("exclude", "release-*, v1.*"),
        ],
    )
    .await;
    assert_eq!(location(&set), "/r/alice/web/-/settings?done=retention-set");
    let listed = api(&app, ALICE, Method::GET, "/api/v1/retention")
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(
        listed["retention"],
        json!([
            {"path": "alice", "keep_last": 10, "keep_days": null, "exclude": []},
            {"path": "alice/web", "keep_last": 3, "keep_days": 30, "exclude": ["release-*", "v1.*"]},
        ])
    );
    let page = web.page("/r/alice/web/-/settings").await;
    assert!(
        page.contains("<code>release-*</code>, <code>v1.*</code>"),
        "{page}"
    );
    assert!(
        page.contains("overridden by a more specific policy"),
        "{page}"
    );
    assert!(
        page.contains(r#"name="keep_last" value="3""#),
        "the form holds it: {page}"
    );

    let (status, body) = status_and_body(
        post(
            &web,
            "/r/alice/web/-/settings",
            "/r/alice/web/-/set-retention",
            &[("keep_last", "many"), ("keep_days", ""), ("exclude", "")],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("must be a whole number"), "{body}");
    assert!(
        body.contains(r#"name="keep_last" value="many""#),
        "as typed: {body}"
    );
    let (status, _) = status_and_body(
        post(
            &web,
            "/r/alice/web/-/settings",
            "/r/alice/web/-/set-retention",
            &[("keep_last", ""), ("keep_days", ""), ("exclude", "x")],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let removed = post(
        &web,
        "/r/alice/web/-/settings",
        "/r/alice/web/-/remove-retention",
        &[],
    )
    .await;
    assert_eq!(
        location(&removed),
        "/r/alice/web/-/settings?done=retention-removed"
    );
    let page = web.page("/r/alice/web/-/settings").await;
    assert!(page.contains("applies"), "the namespace's now: {page}");
    assert!(!page.contains("remove-retention"), "{page}");
    // Removing what is not there again shows why.
    let (status, body) = status_and_body(
        post(
            &web,
            "/r/alice/web/-/settings",
            "/r/alice/web/-/remove-retention",
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("has no retention policy"), "{body}");
}

async fn the_namespace_page_shows_quota_usage_as_a_bar(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    push_as(&mut app, ALICE, "alice/web", &["1"]).await;
    let used = api(&app, ALICE, Method::GET, "/api/v1/quotas/alice")
        .send()
        .await
        .unwrap()
        .json_value()
        .await["used_bytes"]
        .as_u64()
        .unwrap();
    assert!(used > 0);

    let web = signed_in(&app, ALICE).await;
    let unlimited = web.page("/n/alice").await;
    assert!(unlimited.contains("used; no limit is set."), "{unlimited}");
    assert!(!unlimited.contains("<progress"), "{unlimited}");
    assert!(
        !unlimited.contains("set-quota"),
        "only administrators set it: {unlimited}"
    );

    let admin = signed_in(&app, ("admin", ADMIN_PASSWORD)).await;
    let set = post(
        &admin,
        "/n/alice",
        "/n/alice/set-quota",
        &[("limit", "1MiB")],
    )
    .await;
    assert_eq!(set.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&set), "/n/alice?done=quota-set");
    let page = admin.page(location(&set)).await;
    assert!(page.contains("The quota is saved."), "{page}");
    assert!(page.contains("/n/alice/remove-quota"), "{page}");

    let page = web.page("/n/alice").await;
    let bar = format!(r#"<progress id="quota-bar" max="1048576" value="{used}">"#);
    assert!(page.contains(&bar), "{bar} in {page}");
    assert!(page.contains(r#"<label for="quota-bar">"#), "{page}");
    let percent = used * 100 / 1_048_576;
    assert!(page.contains(&format!("({percent}%)")), "{page}");
    assert!(
        page.contains(r#"title="1048576 bytes">1.0 MB</span> used"#),
        "{page}"
    );

    // Below what is stored: the bar is full and the page says so.
    post(&admin, "/n/alice", "/n/alice/set-quota", &[("limit", "10")]).await;
    let over = web.page("/n/alice").await;
    assert!(over.contains(r#"max="10" value="10""#), "{over}");
    assert!(over.contains("Over the limit"), "{over}");

    let (status, body) = status_and_body(
        post(
            &admin,
            "/n/alice",
            "/n/alice/set-quota",
            &[("limit", "lots")],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("is not a size such as 10GiB"), "{body}");
    assert!(body.contains(r#"name="limit" value="lots""#), "{body}");

    let removed = post(&admin, "/n/alice", "/n/alice/remove-quota", &[]).await;
    assert_eq!(location(&removed), "/n/alice?done=quota-removed");
    assert!(web.page("/n/alice").await.contains("no limit is set"));
}

async fn pages_show_refused_markup_as_text(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    push_as(&mut app, ALICE, "alice/web", &["1"]).await;
    let web = signed_in(&app, ALICE).await;
    // Rules hold tag characters and `*` only, so markup is refused, and the
    // refusal shows it (and the form keeps it) as text.
    for (page, action, fields) in [
        (
            "/r/alice/web/-/settings",
            "/r/alice/web/-/add-immutable",
            vec![("pattern", "<b>bold</b>*")],
        ),
        (
            "/n/alice",
            "/n/alice/add-immutable",
            vec![("pattern", "<b>bold</b>*")],
        ),
        (
            "/r/alice/web/-/settings",
            "/r/alice/web/-/set-retention",
            vec![
                ("keep_last", "1"),
                ("keep_days", ""),
                ("exclude", "<b>bold</b>"),
            ],
        ),
    ] {
        let (status, body) = status_and_body(post(&web, page, action, &fields).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{action}");
        assert!(body.contains("is not a tag pattern"), "{action}: {body}");
        assert!(!body.contains("<b>bold"), "{action}: {body}");
        assert!(
            body.contains("&#60;b&#62;bold&#60;/b&#62;"),
            "{action}: {body}"
        );
    }
    let rules = api(&app, ALICE, Method::GET, "/api/v1/immutable-tags")
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(rules["immutable_tags"], json!([]));
    // A delete query with markup is no tag.
    let (status, body) = status_and_body(web.get("/r/alice/web/-/delete?tag=%3Cb%3Ex").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.contains("<b>x"), "{body}");
}
