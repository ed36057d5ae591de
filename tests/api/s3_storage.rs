//! What only the S3 store does: surviving an S3 outage in the middle of
//! traffic (requests that need S3 fail with 503 `UNAVAILABLE`, metadata-only
//! requests keep working, nothing half written becomes visible, and the
//! registry recovers by itself), and redirecting downloads to presigned URLs.
//!
//! The outage is a TCP proxy between Berth and the suite's S3 server that
//! stops (refusing and cutting connections) and starts again on the same
//! port: from Berth's side the server is gone, while other tests keep using
//! the real one undisturbed.

use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::{Backend, TestApp};
use crate::support::*;

struct TcpProxy {
    address: std::net::SocketAddr,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TcpProxy {
    async fn start(target: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = TcpProxy {
            address: listener.local_addr().unwrap(),
            target: target.to_string(),
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(connection);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// The server goes away: new connections are refused, open ones cut.
    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    async fn resume(&self) {
        let listener = TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_gives_503_and_the_registry_recovers_by_itself() {
    let s3 = crate::harness::s3_config();
    let target = s3
        .endpoint
        .clone()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let proxy = TcpProxy::start(&target).await;
    let endpoint = format!("http://{}", proxy.address);
    let app = TestApp::start_with(Backend::S3, |config| {
        if let berth::config::StorageConfig::S3(s3) = &mut config.storage {
            s3.endpoint = Some(endpoint.clone());
        }
    })
    .await;
    let before = push_image(&app, "team/app", "before").await;
    let layer: Vec<u8> = (0..(6 * 1024 * 1024)).map(|i| (i % 241) as u8).collect();
    let layer_digest = sha256(&layer);
    let started = app
        .request(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&started, "location").to_string();
    let first = app
        .request(Method::PATCH, &location)
        .header("content-range", format!("0-{}", 5 * 1024 * 1024 - 1))
        .body(layer[..5 * 1024 * 1024].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);

    // Traffic in flight when S3 goes away.
    let big: Vec<u8> = (0..(24 * 1024 * 1024)).map(|i| (i % 239) as u8).collect();
    let big_digest = sha256(&big);
    let in_flight = app
        .request(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={big_digest}"),
        )
        .body(big.clone())
        .send();
    let outage = async {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        proxy.stop();
    };
    let (in_flight, ()) = tokio::join!(in_flight, outage);
    let in_flight_status = in_flight.unwrap().status();
    assert!(
        matches!(
            in_flight_status,
            StatusCode::CREATED | StatusCode::SERVICE_UNAVAILABLE
        ),
        "{in_flight_status}"
    );

    // What needs S3 fails with 503; what metadata answers keeps working.
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let small = b"written during the outage";
    let refused = post_blob(&app, "team/app", small).await;
    assert_error(refused, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    let rest = app
        .request(Method::PUT, &format!("{location}?digest={layer_digest}"))
        .header(
            "content-range",
            format!("{}-{}", 5 * 1024 * 1024, layer.len() - 1),
        )
        .body(layer[5 * 1024 * 1024..].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(rest, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    let manifest = app.get("/v2/team/app/manifests/before").await;
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_eq!(header(&manifest, "docker-content-digest"), before);
    let config_digest = {
        let body: serde_json::Value = serde_json::from_str(
            &app.get("/v2/team/app/manifests/before")
                .await
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        body["config"]["digest"].as_str().unwrap().to_string()
    };
    assert_eq!(
        app.head(&format!("/v2/team/app/blobs/{config_digest}"))
            .await
            .status(),
        StatusCode::OK
    );
    let pull = app
        .get(&format!("/v2/team/app/blobs/{config_digest}"))
        .await;
    assert_error(pull, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;

    // S3 is back: no restart, the interrupted upload resumes where it stood.
    proxy.resume().await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let status = app.get(&location).await;
    assert_eq!(
        header(&status, "range"),
        format!("0-{}", 5 * 1024 * 1024 - 1)
    );
    let rest = app
        .request(Method::PUT, &format!("{location}?digest={layer_digest}"))
        .header(
            "content-range",
            format!("{}-{}", 5 * 1024 * 1024, layer.len() - 1),
        )
        .body(layer[5 * 1024 * 1024..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::CREATED);
    assert_eq!(
        app.head(&format!("/v2/team/app/blobs/{}", sha256(small)))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Every blob the registry shows is complete and correct.
    for (digest, expected) in [
        (layer_digest.as_str(), layer.as_slice()),
        (big_digest.as_str(), big.as_slice()),
    ] {
        let head = app.head(&format!("/v2/team/app/blobs/{digest}")).await;
        if head.status() == StatusCode::OK {
            let body = app
                .get(&format!("/v2/team/app/blobs/{digest}"))
                .await
                .bytes()
                .await
                .unwrap();
            assert_eq!(body.len(), expected.len());
            assert_eq!(sha256(&body), digest);
        } else {
            assert_eq!(head.status(), StatusCode::NOT_FOUND);
            assert_ne!(
                in_flight_status,
                StatusCode::CREATED,
                "a blob reported as pushed must be there"
            );
        }
    }
    push_image(&app, "team/app", "after").await;
}

/// With `s3_redirect`, whole-blob downloads go straight to S3 through a
/// presigned URL; ranges and `HEAD` are still answered by Berth.
#[tokio::test]
async fn blob_downloads_redirect_to_presigned_urls_when_configured() {
    let app = TestApp::start_with(Backend::S3, |config| {
        if let berth::config::StorageConfig::S3(s3) = &mut config.storage {
            s3.redirect = Some(std::time::Duration::from_secs(60));
        }
    })
    .await;
    let blob: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
    let digest = push_blob(&app, "team/app", &blob).await;
    let response = app.get(&format!("/v2/team/app/blobs/{digest}")).await;
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header(&response, "docker-content-digest"), digest);
    let location = header(&response, "location").to_string();
    let endpoint = crate::harness::s3_config().endpoint.unwrap();
    assert!(location.starts_with(&endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let fetched = reqwest::get(&location).await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(sha256(&fetched.bytes().await.unwrap()), digest);
    let tampered = reqwest::get(location.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
        .await
        .unwrap();
    assert_eq!(tampered.status(), StatusCode::FORBIDDEN);

    let ranged = get_range(&app, &format!("/v2/team/app/blobs/{digest}"), "bytes=10-19").await;
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &blob[10..20]);
    assert_eq!(
        app.head(&format!("/v2/team/app/blobs/{digest}"))
            .await
            .status(),
        StatusCode::OK
    );
}
