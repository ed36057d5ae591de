//! The administration page: administrators only; users created and, after
//! a confirmation page, deleted (their sessions with them); the collector's
//! last passes with what they freed; what the server runs on.

use std::time::Duration;

use reqwest::StatusCode;

use crate::gc::collect;
use crate::harness::{ADMIN_PASSWORD, Backend, TestApp};
use crate::secured_backend_tests;
use crate::support::*;
use crate::ui_support::WebClient;

secured_backend_tests!(
    only_administrators_see_the_administration_page,
    users_are_created_and_deleted_after_a_confirmation,
    the_collectors_last_passes_say_what_they_freed,
);

async fn admin(app: &TestApp) -> WebClient {
    let web = WebClient::new(app);
    web.sign_in("admin", ADMIN_PASSWORD).await;
    web
}

async fn only_administrators_see_the_administration_page(app: TestApp) {
    let anonymous = WebClient::new(&app);
    let sent = anonymous.get("/admin").await;
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&sent, "location"), "/sign-in?next=%2Fadmin");

    create_user(&app, "alice", "alice-password").await;
    let alice = WebClient::new(&app);
    alice.sign_in("alice", "alice-password").await;
    assert!(!alice.page("/").await.contains("href=\"/admin\""));
    assert_eq!(alice.get("/admin").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        alice.get("/admin/users/admin/delete").await.status(),
        StatusCode::FORBIDDEN
    );
    // Forms posted by hand are refused by the commands themselves.
    let csrf = alice.csrf_of("/account").await;
    let made = alice
        .post_form(
            "/admin/users",
            &[
                ("csrf", &csrf),
                ("name", "mallory"),
                ("password", "mallory-password"),
                ("admin", "on"),
            ],
        )
        .await;
    assert_eq!(made.status(), StatusCode::FORBIDDEN);
    let deleted = alice
        .post_form("/admin/users/admin/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(deleted.status(), StatusCode::FORBIDDEN);

    let admin = admin(&app).await;
    assert!(admin.page("/").await.contains("href=\"/admin\""));
    let page = admin.page("/admin").await;
    let database = match app.config.database_url.starts_with("postgres") {
        true => "PostgreSQL",
        false => "SQLite",
    };
    assert!(page.contains(&format!("<dd>{database}</dd>")), "{page}");
    assert!(
        page.contains(&format!("Berth {}", env!("CARGO_PKG_VERSION"))),
        "{page}"
    );
    assert!(page.contains("filesystem at "), "{page}");
    assert!(
        page.contains("No collection pass has finished yet"),
        "{page}"
    );
}

async fn users_are_created_and_deleted_after_a_confirmation(app: TestApp) {
    let admin = admin(&app).await;
    let csrf = admin.csrf_of("/admin").await;
    for (fields, status, message) in [
        (
            [("name", "Bad Name"), ("password", "bob-password")],
            StatusCode::BAD_REQUEST,
            "is not a valid name",
        ),
        (
            [("name", "bob"), ("password", "short")],
            StatusCode::BAD_REQUEST,
            "at least 8 characters",
        ),
        (
            [("name", "admin"), ("password", "bob-password")],
            StatusCode::CONFLICT,
            "already a user",
        ),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let refused = admin.post_form("/admin/users", &form).await;
        assert_eq!(refused.status(), status, "{message}");
        let page = refused.text().await.unwrap();
        assert!(page.contains(message), "{message}: {page}");
    }
    let created = admin
        .post_form(
            "/admin/users",
            &[
                ("csrf", &csrf),
                ("name", "bob"),
                ("password", "bob-password"),
                ("admin", "on"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&created, "location"), "/admin?done=user-created");
    let page = admin.page("/admin?done=user-created").await;
    assert!(page.contains("The user was created."), "{page}");
    assert!(page.contains("<th scope=\"row\">bob</th>"), "{page}");
    assert!(page.contains("href=\"/admin/users/bob/delete\""), "{page}");
    assert!(
        !page.contains("href=\"/admin/users/admin/delete\""),
        "no one deletes themself here"
    );

    let bob = WebClient::new(&app);
    bob.sign_in("bob", "bob-password").await;
    assert!(bob.page("/admin").await.contains("Administration"));

    // The link leads to a confirmation page; only its form deletes.
    let confirm = admin.page("/admin/users/bob/delete").await;
    assert!(confirm.contains("Delete user"), "{confirm}");
    assert!(
        confirm.contains("action=\"/admin/users/bob/delete\""),
        "{confirm}"
    );
    assert_eq!(
        admin.get("/admin/users/nobody/delete").await.status(),
        StatusCode::NOT_FOUND
    );
    // A NUL never reaches a query (PostgreSQL would refuse it with a 500).
    assert_eq!(
        admin.get("/admin/users/a%00b/delete").await.status(),
        StatusCode::NOT_FOUND
    );
    let nul = admin
        .post_form("/admin/users/a%00b/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(nul.status(), StatusCode::NOT_FOUND);
    let deleted = admin
        .post_form("/admin/users/bob/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header(&deleted, "location"),
        "/admin?done=user-deleted#users"
    );
    assert!(
        !admin
            .page("/admin")
            .await
            .contains("<th scope=\"row\">bob</th>")
    );
    // Their session went with them, and so did their password.
    assert!(!bob.page("/").await.contains("Signed in as"));
    let again = WebClient::new(&app)
        .try_sign_in("bob", "bob-password")
        .await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);

    let myself = admin
        .post_form("/admin/users/admin/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(myself.status(), StatusCode::CONFLICT);
}

async fn the_collectors_last_passes_say_what_they_freed(mut app: TestApp) {
    // A blob pushed and never used by a manifest: the next pass with no
    // grace collects it.
    app.bearer = Some(
        token(
            &app,
            Some(("admin", ADMIN_PASSWORD)),
            &["repository:admin/scratch:pull,push"],
        )
        .await,
    );
    push_blob(&app, "admin/scratch", &[7u8; 1500]).await;
    let report = collect(&app, Duration::ZERO, false).await;
    assert_eq!(report.collected.blobs, 1);
    // Dry runs are not passes.
    collect(&app, Duration::ZERO, true).await;

    let admin = admin(&app).await;
    let page = admin.page("/admin").await;
    let section =
        &page[page.find("id=\"collector\"").unwrap()..page.find("id=\"server\"").unwrap()];
    assert_eq!(
        section.matches("<tr>").count(),
        2,
        "a header and one pass: {section}"
    );
    assert!(
        section.contains("<td class=\"num\">1.5 kB</td>"),
        "{section}"
    );
    assert!(section.contains("just now"), "{section}");

    // The table keeps the last 20.
    for _ in 0..21 {
        collect(&app, Duration::ZERO, false).await;
    }
    let page = admin.page("/admin").await;
    let section =
        &page[page.find("id=\"collector\"").unwrap()..page.find("id=\"server\"").unwrap()];
    assert_eq!(section.matches("<tr>").count(), 21, "{section}");
}

#[tokio::test]
async fn with_authentication_off_the_page_is_everyones() {
    let app = TestApp::start(Backend::Sqlite).await;
    let page = WebClient::new(&app).page("/admin").await;
    assert!(page.contains("<h2 id=\"users\">Users</h2>"), "{page}");
    assert!(page.contains("<dd>SQLite</dd>"), "{page}");
}
