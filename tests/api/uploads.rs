//! Upload sessions: monolithic, POST-then-PUT, streamed, chunked, resumed
//! after a restart, cancelled, and every way a client can get it wrong.

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest as _, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend_tests;
use crate::harness::TestApp;
use crate::support::*;

async fn start(app: &TestApp, repo: &str) -> String {
    let response = app
        .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&response, "range"), "0-0");
    assert_eq!(header(&response, "content-length"), "0");
    let location = header(&response, "location").to_string();
    let uuid = header(&response, "docker-upload-uuid");
    assert!(location.starts_with(&format!("/v2/{repo}/blobs/uploads/")));
    assert!(location.ends_with(uuid));
    location
}

fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// Closes an upload session: `PUT <location>?digest=<digest>`, no body.
async fn close(app: &TestApp, location: &str, digest: &str) -> Response {
    app.request(Method::PUT, &with_digest(location, digest))
        .send()
        .await
        .unwrap()
}

async fn patch(app: &TestApp, location: &str, range: Option<&str>, body: &[u8]) -> Response {
    let mut request = app.request(Method::PATCH, location).body(body.to_vec());
    if let Some(range) = range {
        request = request.header("content-range", range);
    }
    request.send().await.unwrap()
}

async fn assert_blob(app: &TestApp, repo: &str, digest: &str, expected: &[u8]) {
    let response = app.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "docker-content-digest"), digest);
    assert_eq!(response.bytes().await.unwrap().as_ref(), expected);
}

async fn monolithic_upload_verifies_the_digest(app: TestApp) {
    let digest = push_blob(&app, "alice/app", b"one request").await;
    assert_blob(&app, "alice/app", &digest, b"one request").await;

    let wrong = sha256(b"something else");
    let response = app
        .request(
            Method::POST,
            &format!("/v2/alice/app/blobs/uploads/?digest={wrong}"),
        )
        .body("one more request")
        .send()
        .await
        .unwrap();
    let body = assert_error(response, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        body["errors"][0]["detail"]["actual"],
        sha256(b"one more request")
    );
    assert_eq!(
        app.head(&format!("/v2/alice/app/blobs/{wrong}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let actual = sha256(b"one more request");
    assert_eq!(
        app.head(&format!("/v2/alice/app/blobs/{actual}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Nothing is left staged by the refused upload.
    assert_eq!(staged_files(&app).await, 0);
}

/// Upload staging left in blob storage: files on the filesystem, staging
/// objects on S3.
pub async fn staged_files(app: &TestApp) -> usize {
    match &app.config.storage {
        berth::config::StorageConfig::Filesystem(root) => {
            std::fs::read_dir(root.join("uploads")).unwrap().count()
        }
        berth::config::StorageConfig::S3(s3) => {
            crate::harness::s3_objects(s3, "staging/").await.len()
        }
    }
}

async fn post_then_put_with_the_whole_body(app: TestApp) {
    // containerd's way: an empty POST, then one PUT carrying everything.
    let location = start(&app, "alice/app").await;
    let data = b"containerd style";
    let digest = sha256(data);
    let response = app
        .request(Method::PUT, &with_digest(&location, &digest))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "docker-content-digest"), digest);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/alice/app/blobs/{digest}")
    );
    assert_blob(&app, "alice/app", &digest, data).await;
    // The session is over.
    assert_error(
        app.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

async fn streamed_patch_without_content_range(app: TestApp) {
    // The Docker engine's way: one PATCH with a chunked body and no Content-Range.
    let location = start(&app, "alice/app").await;
    let parts: Vec<Result<Bytes, std::io::Error>> = (0..50)
        .map(|i| Ok(Bytes::from(vec![i as u8; 10_000])))
        .collect();
    let whole: Vec<u8> = (0..50).flat_map(|i| vec![i as u8; 10_000]).collect();
    let response = app
        .request(Method::PATCH, &location)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&response, "range"), "0-499999");
    let next = header(&response, "location").to_string();
    let digest = sha256(&whole);
    let done = close(&app, &next, &digest).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_blob(&app, "alice/app", &digest, &whole).await;
}

async fn chunked_upload_in_order_with_status(app: TestApp) {
    let location = start(&app, "alice/app").await;
    let first = patch(&app, &location, Some("0-4"), b"hello").await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&first, "range"), "0-4");

    let status = app.get(&location).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "range"), "0-4");
    assert_eq!(header(&status, "location"), location);

    // Out of order: a gap, and a replay of the first chunk.
    let gap = patch(&app, &location, Some("10-14"), b"world").await;
    assert_eq!(header(&gap, "range"), "0-4");
    assert_error(
        gap,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    let replay = patch(&app, &location, Some("0-4"), b"hello").await;
    assert_eq!(replay.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    // A Content-Range that does not match the body is refused and changes nothing.
    let short = patch(&app, &location, Some("5-10"), b" wor").await;
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    let garbage = patch(&app, &location, Some("five-ten"), b" world").await;
    assert_eq!(garbage.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let second = patch(&app, &location, Some("5-10"), b" world").await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&second, "range"), "0-10");
    // The last chunk may come with the PUT itself.
    let digest = sha256(b"hello world!");
    let done = app
        .request(Method::PUT, &with_digest(&location, &digest))
        .header("content-range", "11-11")
        .body("!")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_blob(&app, "alice/app", &digest, b"hello world!").await;
}

async fn wrong_digest_at_the_end_discards_the_upload(app: TestApp) {
    let location = start(&app, "alice/app").await;
    assert_eq!(
        patch(&app, &location, None, b"some data").await.status(),
        StatusCode::ACCEPTED
    );
    let wrong = sha256(b"other data");
    let response = close(&app, &location, &wrong).await;
    assert_error(response, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        app.head(&format!("/v2/alice/app/blobs/{wrong}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_error(
        app.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_eq!(staged_files(&app).await, 0);

    let missing = start(&app, "alice/app").await;
    let no_digest = app.request(Method::PUT, &missing).send().await.unwrap();
    assert_error(no_digest, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let bad_digest = close(&app, &missing, "sha256:xyz").await;
    assert_error(bad_digest, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

async fn cancelled_and_foreign_sessions_are_unknown(app: TestApp) {
    let location = start(&app, "alice/app").await;
    assert_eq!(
        patch(&app, &location, None, b"partial").await.status(),
        StatusCode::ACCEPTED
    );
    // The same session id under another repository does not exist.
    let foreign = location.replace("/alice/app/", "/bob/app/");
    assert_error(
        app.get(&foreign).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        patch(&app, &foreign, None, b"x").await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;

    assert_eq!(app.delete(&location).await.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        app.delete(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_error(
        patch(&app, &location, None, b"more").await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_eq!(staged_files(&app).await, 0);
    let made_up = "/v2/alice/app/blobs/uploads/not-a-session";
    assert_error(
        app.get(made_up).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
}

async fn sha512_and_empty_blobs(app: TestApp) {
    let data = b"sha512 content";
    let digest = format!("sha512:{}", hex::encode(Sha512::digest(data)));
    let response = app
        .request(
            Method::POST,
            &format!("/v2/alice/app/blobs/uploads/?digest={digest}"),
        )
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_blob(&app, "alice/app", &digest, data).await;

    // A session hashed as sha256 can still be completed with a sha512 digest.
    let location = start(&app, "alice/app").await;
    let chunked = b"chunked sha512";
    assert_eq!(
        patch(&app, &location, None, chunked).await.status(),
        StatusCode::ACCEPTED
    );
    let digest = format!("sha512:{}", hex::encode(Sha512::digest(chunked)));
    let done = close(&app, &location, &digest).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_blob(&app, "alice/app", &digest, chunked).await;

    let empty = push_blob(&app, "alice/app", b"").await;
    let head = app.head(&format!("/v2/alice/app/blobs/{empty}")).await;
    assert_eq!(header(&head, "content-length"), "0");
    assert_blob(&app, "alice/app", &empty, b"").await;
}

/// Sends a request whose body stops short of its Content-Length, then hangs up.
async fn send_truncated(app: &TestApp, method: &str, path: &str, announced: usize, sent: &[u8]) {
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {announced}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
}

async fn truncated_bodies_store_nothing(app: TestApp) {
    let location = start(&app, "alice/app").await;
    assert_eq!(
        patch(&app, &location, None, b"first ").await.status(),
        StatusCode::ACCEPTED
    );
    send_truncated(&app, "PATCH", &location, 1000, b"only part of the chunk").await;
    // The session still stands where the last complete chunk left it.
    let status = app.get(&location).await;
    assert_eq!(header(&status, "range"), "0-5");
    assert_eq!(
        patch(&app, &location, None, b"second").await.status(),
        StatusCode::ACCEPTED
    );
    let digest = sha256(b"first second");
    let done = close(&app, &location, &digest).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_blob(&app, "alice/app", &digest, b"first second").await;

    // A monolithic upload cut short leaves no blob.
    let whole = vec![7u8; 1000];
    let digest = sha256(&whole);
    send_truncated(
        &app,
        "POST",
        &format!("/v2/alice/app/blobs/uploads/?digest={digest}"),
        1000,
        &whole[..400],
    )
    .await;
    assert_eq!(
        app.head(&format!("/v2/alice/app/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

async fn chunked_upload_survives_a_restart(mut app: TestApp) {
    let location = start(&app, "alice/app").await;
    let first = vec![1u8; 300_000];
    let second = vec![2u8; 200_000];
    assert_eq!(
        patch(&app, &location, Some("0-299999"), &first)
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    app.restart().await;

    let status = app.get(&location).await;
    assert_eq!(header(&status, "range"), "0-299999");
    assert_eq!(
        patch(&app, &location, Some("300000-499999"), &second)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let whole = [first, second].concat();
    let digest = sha256(&whole);
    let done = close(&app, &location, &digest).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_blob(&app, "alice/app", &digest, &whole).await;
}

async fn large_blob_streams_through(app: TestApp) {
    // 64 MiB generated on the fly, never held whole on either side.
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 64;
    let chunk = |i: usize| Bytes::from(vec![(i % 251) as u8; CHUNK]);
    let mut hasher = Sha256::new();
    for i in 0..CHUNKS {
        hasher.update(chunk(i));
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    let body =
        futures_util::stream::iter((0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
    let response = app
        .request(
            Method::POST,
            &format!("/v2/alice/big/blobs/uploads/?digest={digest}"),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let response = app.get(&format!("/v2/alice/big/blobs/{digest}")).await;
    assert_eq!(
        header(&response, "content-length"),
        (CHUNK * CHUNKS).to_string()
    );
    let mut stream = response.bytes_stream();
    let mut hasher = Sha256::new();
    let mut total = 0;
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.unwrap();
        total += bytes.len();
        hasher.update(&bytes);
    }
    assert_eq!(total, CHUNK * CHUNKS);
    assert_eq!(format!("sha256:{}", hex::encode(hasher.finalize())), digest);
}

async fn concurrent_pushes_of_one_blob_end_with_one_blob(app: TestApp) {
    let data = vec![9u8; 100_000];
    let digest = sha256(&data);
    let pushes = (0..8).map(|i| {
        let app = &app;
        let data = data.clone();
        async move { post_blob(app, &format!("team/app{}", i % 2), &data).await }
    });
    // Each push is told the digest the registry stored, not the one it asked for.
    for response in futures_util::future::join_all(pushes).await {
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(header(&response, "docker-content-digest"), digest);
    }
    for repo in ["team/app0", "team/app1"] {
        assert_blob(&app, repo, &digest, &data).await;
    }
    // Every upload committed its own copy; all but the first recorded are gone.
    assert_eq!(crate::gc::stored_blobs(&app).await, 1);
    assert_eq!(staged_files(&app).await, 0);
}

/// Two instances on one database and one blob directory: while a final
/// PUT streams its body through one, a PATCH through the other saves a chunk
/// to the same session. The PUT, which read the session first, must not
/// record its blob; its client learns where the session now stands.
#[tokio::test]
async fn a_final_put_loses_to_a_chunk_saved_meanwhile_through_another_instance() {
    let first = TestApp::start(crate::harness::Backend::Postgres).await;
    let second = TestApp::start_with(crate::harness::Backend::Postgres, |config| {
        config.database_url = first.config.database_url.clone();
        config.storage = first.config.storage.clone();
    })
    .await;
    let location = start(&first, "team/app").await;
    let id = location.rsplit('/').next().unwrap().to_string();
    let berth::config::StorageConfig::Filesystem(root) = &first.config.storage else {
        unreachable!("PostgreSQL tests keep blobs on the filesystem")
    };
    let staging = root.join("uploads").join(&id);

    // Past the store's 1 MiB write batch, so the head reaches the disk at once.
    let (head, tail) = (vec![1u8; 2 << 20], vec![2u8; 64 * 1024]);
    let digest = sha256(&[head.clone(), tail.clone()].concat());
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let bytes = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(bytes), receiver))
    });
    let put = first
        .request(Method::PUT, &with_digest(&location, &digest))
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let put = tokio::spawn(put);
    sender.send(Bytes::from(head)).await.unwrap();
    // The PUT has read the session once its first bytes reach staging.
    for waited in 0.. {
        if std::fs::metadata(&staging).map_or(0, |m| m.len()) > 0 {
            break;
        }
        assert!(waited < 3000, "the PUT's body never reached staging");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let chunk = patch(&second, &location, Some("0-4"), b"other").await;
    assert_eq!(chunk.status(), StatusCode::ACCEPTED);
    sender.send(Bytes::from(tail)).await.unwrap();
    drop(sender);

    let response = put.await.unwrap().unwrap();
    assert_eq!(header(&response, "range"), "0-4");
    assert_error(
        response,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    for app in [&first, &second] {
        let head = app.head(&format!("/v2/team/app/blobs/{digest}")).await;
        assert_eq!(head.status(), StatusCode::NOT_FOUND);
    }
}

/// Several MiB in chunks that end mid-page, each first sent cut short: on
/// the filesystem store with `fsync` on, whole pages are written around the
/// page cache and the rest carried to the next batch or written at the end,
/// and a chunk that resumes mid-page rewrites that page. Whatever a cut
/// chunk left past the session's offset must be gone, every byte in place.
async fn chunks_ending_mid_page_read_back_exactly(app: TestApp) {
    let content: Vec<u8> = (0..5 * 1024 * 1024 + 1234u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut location = start(&app, "alice/odd").await;
    let cuts = [0, 1_048_577, 4_048_578, content.len()];
    for pair in cuts.windows(2) {
        let chunk = &content[pair[0]..pair[1]];
        // More than one write batch (1 MiB) where the chunk allows.
        let cut_short = (chunk.len() - 1).min(1_300_000);
        send_truncated(&app, "PATCH", &location, chunk.len(), &chunk[..cut_short]).await;
        let range = format!("{}-{}", pair[0], pair[1] - 1);
        let response = patch(&app, &location, Some(&range), chunk).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "chunk {range}");
        assert_eq!(header(&response, "range"), format!("0-{}", pair[1] - 1));
        location = header(&response, "location").to_string();
    }
    let digest = sha256(&content);
    let done = close(&app, &location, &digest).await;
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_blob(&app, "alice/odd", &digest, &content).await;
    let ranged = get_range(
        &app,
        &format!("/v2/alice/odd/blobs/{digest}"),
        "bytes=4090-1048600",
    )
    .await;
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert!(ranged.bytes().await.unwrap() == content[4090..=1_048_600]);
}

mod chunks_ending_mid_page {
    use crate::harness::{Backend, TestApp};

    // Not on S3, whose multipart parts have a minimum size.
    #[tokio::test]
    async fn sqlite() {
        super::chunks_ending_mid_page_read_back_exactly(TestApp::start(Backend::Sqlite).await)
            .await;
    }

    #[tokio::test]
    async fn postgres() {
        super::chunks_ending_mid_page_read_back_exactly(TestApp::start(Backend::Postgres).await)
            .await;
    }
}

backend_tests!(
    monolithic_upload_verifies_the_digest,
    post_then_put_with_the_whole_body,
    streamed_patch_without_content_range,
    chunked_upload_in_order_with_status,
    wrong_digest_at_the_end_discards_the_upload,
    cancelled_and_foreign_sessions_are_unknown,
    sha512_and_empty_blobs,
    truncated_bodies_store_nothing,
    chunked_upload_survives_a_restart,
    large_blob_streams_through,
    concurrent_pushes_of_one_blob_end_with_one_blob,
);
