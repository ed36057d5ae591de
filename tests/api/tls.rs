//! HTTPS served by Berth itself, and the limits every connection is held to.
//!
//! The certificates are made here, at test time, for `berth-tls.test` (and
//! `::1`), signed by a CA of the test's own. The name must resolve to `::1`:
//! Docker skips certificate checks for 127.0.0.0/8 but not for `::1`, so only
//! there is verification really on. [`map_test_host`] appends
//! `::1 berth-tls.test` to /etc/hosts when it is missing (the suite runs as
//! root, as scripts/test.sh does). TLS is the same on every backend, so these
//! run on SQLite only. `scripts/test.sh` installs podman and starts dockerd;
//! without them the client tests fail, loudly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::config::Config;
use berth::tls::TlsConfig;
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{ADMIN_PASSWORD, Backend, TestApp};
use crate::real_clients::{DOCKER, build_context, docker_login, require_docker, run};
use crate::support::*;

/// The name the test certificates are for; it resolves to `::1`.
const HOST: &str = "berth-tls.test";

/// Makes [`HOST`] resolve to `::1` for every client on the machine.
fn map_test_host() {
    static MAPPED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut mapped = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
    if *mapped {
        return;
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let present = hosts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        fields.next() == Some("::1") && fields.any(|name| name == HOST)
    });
    if !present {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open("/etc/hosts")
            .unwrap_or_else(|e| {
                panic!("cannot add `::1 {HOST}` to /etc/hosts ({e}): run the suite as root, as scripts/test.sh does")
            });
        writeln!(file, "\n::1 {HOST}").unwrap();
    }
    *mapped = true;
}

/// A CA and a server certificate it signed, for [`HOST`] and `::1`.
struct Pair {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
    /// The server certificate, DER: what a handshake presents first.
    leaf: Vec<u8>,
}

fn new_pair() -> Pair {
    let generated =
        berth::tls::self_signed::generate(&[HOST.into()], &["::1".parse().unwrap()]).unwrap();
    let leaf = CertificateDer::from_pem_slice(generated.server_chain_pem.as_bytes())
        .unwrap()
        .to_vec();
    Pair {
        ca_pem: generated.ca_cert_pem,
        chain_pem: generated.server_chain_pem,
        key_pem: generated.server_key_pem,
        leaf,
    }
}

/// Certificate files laid out as cert-manager and the kubelet do: the
/// configured paths go through a `live` symlink to a versioned directory,
/// and an update swaps the symlink.
struct Files {
    dir: tempfile::TempDir,
    version: u32,
}

impl Files {
    fn new(pair: &Pair) -> Files {
        let mut files = Files {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        files.install(&pair.chain_pem, &pair.key_pem);
        files
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.path().join("live/server.crt")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("live/server.key")
    }

    fn install(&mut self, chain_pem: &str, key_pem: &str) {
        self.version += 1;
        let version = format!("v{}", self.version);
        let dir = self.dir.path().join(&version);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("server.crt"), chain_pem).unwrap();
        std::fs::write(dir.join("server.key"), key_pem).unwrap();
        let next = self.dir.path().join("live.next");
        std::os::unix::fs::symlink(&version, &next).unwrap();
        std::fs::rename(&next, self.dir.path().join("live")).unwrap();
    }
}

/// A reqwest client that trusts only `ca_pem` and finds [`HOST`] at `address`.
fn client_trusting(ca_pem: &str, address: SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve(HOST, address)
        .redirect(reqwest::redirect::Policy::none())
}

fn port(app: &TestApp) -> u16 {
    app.base.rsplit(':').next().unwrap().parse().unwrap()
}

fn address(app: &TestApp) -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port(app)))
}

/// A private registry serving HTTPS on `[::1]` with `files`; `base` names
/// it `https://berth-tls.test:PORT` and `client` trusts only `ca_pem`.
async fn start_tls(files: &Files, ca_pem: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
    map_test_host();
    let (cert_file, key_file) = (files.cert_file(), files.key_file());
    let mut app = TestApp::start_with(Backend::Sqlite, |config| {
        config.listen = "[::1]:0".parse().unwrap();
        config.auth.enabled = true;
        config.auth.admin_password = Some(ADMIN_PASSWORD.into());
        config.tls = Some(TlsConfig {
            cert_file,
            key_file,
            handshake_timeout: Duration::from_secs(10),
        });
        configure(config);
    })
    .await;
    assert!(app.base.starts_with("https://[::1]:"), "{}", app.base);
    let address = address(&app);
    app.base = format!("https://{HOST}:{}", address.port());
    app.client = client_trusting(ca_pem, address).build().unwrap();
    app
}

/// The certificate a new connection to `port` is shown, trusting `cas`.
async fn presented_certificate(port: u16, cas: &[&str]) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(berth::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("::1", port)).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from(HOST).unwrap(), tcp)
        .await
        .expect("TLS handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn https_negotiates_http2_and_sends_clients_to_an_https_realm() {
    let pair = new_pair();
    let files = Files::new(&pair);
    let mut app = start_tls(&files, &pair.ca_pem, |_| {}).await;
    let realm = format!("realm=\"https://{HOST}:{}/token\"", port(&app));

    let challenge = app.get("/v2/").await;
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.version(), reqwest::Version::HTTP_2);
    let www_authenticate = header(&challenge, "www-authenticate");
    assert!(www_authenticate.contains(&realm), "{www_authenticate}");

    // A client offering only HTTP/1.1 gets it, and the same realm.
    let http1 = client_trusting(&pair.ca_pem, address(&app))
        .http1_only()
        .build()
        .unwrap();
    let challenge = http1.get(app.url("/v2/")).send().await.unwrap();
    assert_eq!(challenge.version(), reqwest::Version::HTTP_11);
    assert!(header(&challenge, "www-authenticate").contains(&realm));

    create_user(&app, "alice", "alice-password").await;
    app.bearer = Some(token(&app, Some(("alice", "alice-password")), &[]).await);
    let base = app.get("/v2/").await;
    assert_eq!(base.status(), StatusCode::OK);
    assert_eq!(base.version(), reqwest::Version::HTTP_2);

    // Plain HTTP on the HTTPS port is no request at all.
    let plain = reqwest::Client::new()
        .get(format!("http://[::1]:{}/v2/", port(&app)))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused() {
    let pair = new_pair();
    let files = Files::new(&pair);
    let app = start_tls(&files, &pair.ca_pem, |_| {}).await;
    let stranger = new_pair();
    let client = client_trusting(&stranger.ca_pem, address(&app))
        .build()
        .unwrap();
    let error = client.get(app.url("/v2/")).send().await.unwrap_err();
    let chain = format!("{error:?}");
    assert!(chain.contains("InvalidCertificate"), "{chain}");
    // The trusted client still gets its answer.
    assert_eq!(app.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
}

/// A body whose chunks the test sends one at a time, when it pleases.
fn streamed_body() -> (tokio::sync::mpsc::Sender<Bytes>, reqwest::Body) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(chunk), receiver))
    });
    (sender, reqwest::Body::wrap_stream(stream))
}

fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_while_an_upload_goes_on() {
    let first = new_pair();
    let mut files = Files::new(&first);
    let mut app = start_tls(&files, &first.ca_pem, |_| {}).await;
    create_user(&app, "alice", "alice-password").await;
    app.bearer = Some(
        token(
            &app,
            Some(("alice", "alice-password")),
            &["repository:alice/renewed:pull,push"],
        )
        .await,
    );
    let port = port(&app);
    assert_eq!(
        presented_certificate(port, &[&first.ca_pem]).await,
        first.leaf
    );

    let started = app
        .request(Method::POST, "/v2/alice/renewed/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = header(&started, "location").to_string();
    let (chunks, body) = streamed_body();
    let upload = tokio::spawn(app.request(Method::PATCH, &location).body(body).send());
    let chunk = |i: u8| Bytes::from(vec![i; 64 * 1024]);
    let mut sent = Vec::new();
    for i in 0..3 {
        chunks.send(chunk(i)).await.unwrap();
        sent.extend_from_slice(&chunk(i));
    }

    // The files change under the running server, as a renewal does.
    let second = new_pair();
    files.install(&second.chain_pem, &second.key_pem);
    let both = [first.ca_pem.as_str(), second.ca_pem.as_str()];
    let deadline = Instant::now() + Duration::from_secs(15);
    while presented_certificate(port, &both).await != second.leaf {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 15 s"
        );
        // The upload's connection is still on its old certificate: it goes on.
        chunks.send(chunk(7)).await.unwrap();
        sent.extend_from_slice(&chunk(7));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_ne!(first.leaf, second.leaf);
    for i in 3..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        chunks.send(chunk(i)).await.unwrap();
        sent.extend_from_slice(&chunk(i));
    }
    drop(chunks);
    let patched = upload.await.unwrap().unwrap();
    assert_eq!(patched.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&patched, "range"), format!("0-{}", sent.len() - 1));
    let digest = sha256(&sent);
    let next = header(&patched, "location").to_string();
    let done = app
        .request(Method::PUT, &with_digest(&next, &digest))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);
    let blob = app
        .get(&format!("/v2/alice/renewed/blobs/{digest}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(blob.len(), sent.len());

    // Files that do not load are not served: the renewed certificate stays.
    files.install("not a certificate", &second.key_pem);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(presented_certificate(port, &both).await, second.leaf);
    let fresh = client_trusting(&second.ca_pem, address(&app))
        .build()
        .unwrap();
    let answer = fresh.get(app.url("/v2/")).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
}

/// Reads until the peer closes; panics if it is still open after `limit`.
/// Returns what was read and how long it took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => read.extend_from_slice(&buffer[..n]),
            Err(_) => panic!(
                "the connection is still open after {limit:?}; read {:?}",
                String::from_utf8_lossy(&read)
            ),
        }
    }
    (String::from_utf8_lossy(&read).into_owned(), start.elapsed())
}

fn plain_address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_request_whose_headers_never_end_is_closed() {
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.http.header_read_timeout = Duration::from_secs(1);
        config.http.idle_timeout = Duration::from_secs(60);
    })
    .await;
    // Half a request line, then nothing.
    let mut half = TcpStream::connect(plain_address(&app)).await.unwrap();
    half.write_all(b"GET /v2/ HT").await.unwrap();
    let (read, took) = read_until_closed(&mut half, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    assert!(!read.starts_with("HTTP/1.1 2"), "{read}");
    // A connection that never says anything.
    let mut silent = TcpStream::connect(plain_address(&app)).await.unwrap();
    read_until_closed(&mut silent, Duration::from_secs(10)).await;
    // A second request's headers, after a first answered, have the same time.
    let mut second = TcpStream::connect(plain_address(&app)).await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: berth\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 1024];
    let n = second.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let (read, took) = read_until_closed(&mut second, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    assert!(read.is_empty(), "{read}");

    // Nobody else was held up.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_tls_handshake_that_never_ends_is_closed() {
    let pair = new_pair();
    let files = Files::new(&pair);
    let app = start_tls(&files, &pair.ca_pem, |config| {
        config.tls.as_mut().unwrap().handshake_timeout = Duration::from_secs(1);
        config.http.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut stalled = TcpStream::connect(address(&app)).await.unwrap();
    // The first bytes of a ClientHello record, then nothing.
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let (_, took) = read_until_closed(&mut stalled, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    assert_eq!(app.get("/v2/").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_and_slow_uploads_do_not() {
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.http.header_read_timeout = Duration::from_secs(1);
        config.http.idle_timeout = Duration::from_secs(1);
    })
    .await;
    // A keep-alive connection, answered, then left alone.
    let mut idle = TcpStream::connect(plain_address(&app)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: berth\r\n\r\n")
        .await
        .unwrap();
    let (read, took) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");

    // An upload that sends a little at a time, for longer than both
    // timeouts, is never cut. (A fresh connection each request: pooled ones
    // are closed behind the client's back after a second.)
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = client
        .post(app.url("/v2/alice/slow/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = app.url(header(&started, "location"));
    let (chunks, body) = streamed_body();
    let upload = tokio::spawn(client.patch(&location).body(body).send());
    let mut sent = Vec::new();
    for i in 0..8u8 {
        let chunk = Bytes::from(vec![i; 1000]);
        sent.extend_from_slice(&chunk);
        chunks.send(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    drop(chunks);
    let patched = upload.await.unwrap().unwrap();
    assert_eq!(patched.status(), StatusCode::ACCEPTED);
    let next = app.url(header(&patched, "location"));
    let done = client
        .put(with_digest(&next, &sha256(&sent)))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);

    // One that stops sending is, after the idle timeout.
    let started = client
        .post(app.url("/v2/alice/slow/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = app.url(header(&started, "location"));
    let (chunks, body) = streamed_body();
    let upload = tokio::spawn(client.patch(&location).body(body).send());
    chunks.send(Bytes::from_static(b"a start")).await.unwrap();
    let stalled = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .expect("a stalled upload is cut");
    assert!(
        stalled.unwrap().is_err(),
        "the stalled upload got an answer"
    );
    drop(chunks);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_one_to_close() {
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.http.max_connections = 2;
    })
    .await;
    const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: berth\r\n\r\n";
    /// Sends a request and reads its answer, or gives up after `limit`.
    async fn answered(stream: &mut TcpStream, limit: Duration) -> bool {
        stream.write_all(REQUEST).await.unwrap();
        let mut buffer = [0u8; 1024];
        match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => false,
        }
    }
    let address = plain_address(&app);
    let mut first = TcpStream::connect(&address).await.unwrap();
    let mut second = TcpStream::connect(&address).await.unwrap();
    assert!(answered(&mut first, Duration::from_secs(5)).await);
    assert!(answered(&mut second, Duration::from_secs(5)).await);
    // The third is queued by the kernel, but not served.
    let mut third = TcpStream::connect(&address).await.unwrap();
    assert!(!answered(&mut third, Duration::from_secs(1)).await);
    drop(first);
    let mut buffer = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buffer))
        .await
        .expect("served once a place is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
    drop(second);
    drop(third);
    // And the server goes on answering.
    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    }
}

/// `/etc/docker/certs.d/HOST:PORT/`, removed when dropped.
struct DockerCertsDir(PathBuf);

impl DockerCertsDir {
    fn new(registry: &str) -> Self {
        let dir = Path::new("/etc/docker/certs.d").join(registry);
        std::fs::create_dir_all(&dir).unwrap();
        DockerCertsDir(dir)
    }

    fn trust(&self, ca_pem: &str) {
        std::fs::write(self.0.join("ca.crt"), ca_pem).unwrap();
    }
}

impl Drop for DockerCertsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Docker engine with verification on: refused with another CA in
/// `certs.d`, then login, push and pull with the right one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_logs_in_pushes_and_pulls_over_verified_tls() {
    require_docker().await;
    let _turn = DOCKER.lock().await;
    let pair = new_pair();
    let files = Files::new(&pair);
    let app = start_tls(&files, &pair.ca_pem, |_| {}).await;
    create_user(&app, "alice", "alice-password").await;
    let registry = format!("{HOST}:{}", port(&app));
    let certs = DockerCertsDir::new(&registry);
    let docker_config = tempfile::tempdir().unwrap();
    let env = [("DOCKER_CONFIG", docker_config.path().to_str().unwrap())];

    certs.trust(&new_pair().ca_pem);
    let refused = docker_login(&registry, "alice", "alice-password", &env).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("x509") || stderr.contains("certificate"),
        "{stderr}"
    );

    certs.trust(&pair.ca_pem);
    let login = docker_login(&registry, "alice", "alice-password", &env).await;
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let image = format!("{registry}/alice/over-tls:1");
    let greeting = format!("hello over TLS {}", uuid::Uuid::new_v4());
    let context = tempfile::tempdir().unwrap();
    build_context(context.path(), &greeting).await;
    run(
        "docker",
        &["build", "-t", &image, context.path().to_str().unwrap()],
        &[env[0], ("DOCKER_BUILDKIT", "0")],
    )
    .await;
    let push = run("docker", &["push", &image], &env).await;
    assert!(push.contains("digest: sha256"), "{push}");
    run("docker", &["rmi", &image], &env).await;
    let pull = run("docker", &["pull", &image], &env).await;
    assert!(pull.contains("Downloaded newer image"), "{pull}");
    let output = run("docker", &["run", "--rm", &image], &env).await;
    assert_eq!(output.trim(), greeting);
    run("docker", &["logout", &registry], &env).await;
    run("docker", &["rmi", &image], &env).await;
}

fn require_podman() {
    if !Path::new("/usr/bin/podman").exists() {
        panic!("podman is not installed: run the suite with scripts/test.sh, which installs it");
    }
}

/// skopeo and podman verify TLS by default, even on loopback; each is
/// given the CA with `--cert-dir`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_and_podman_copy_push_and_pull_over_verified_tls() {
    require_podman();
    let pair = new_pair();
    let files = Files::new(&pair);
    let mut app = start_tls(&files, &pair.ca_pem, |_| {}).await;
    create_user(&app, "alice", "alice-password").await;
    let registry = format!("{HOST}:{}", port(&app));
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_string();
    let cert_dir = path("certs");
    std::fs::create_dir(&cert_dir).unwrap();
    std::fs::write(work.path().join("certs/ca.crt"), &pair.ca_pem).unwrap();
    let wrong_dir = path("wrong");
    std::fs::create_dir(&wrong_dir).unwrap();
    std::fs::write(work.path().join("wrong/ca.crt"), new_pair().ca_pem).unwrap();
    let policy = path("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/fixtures/make-oci-layout.sh"
    );
    let source = path("source");
    let index_digest = run("bash", &[script, &source], &[])
        .await
        .trim()
        .to_string();
    let remote = format!("docker://{registry}/alice/multi:1");
    let skopeo_copy = |cert_dir: String, from: String, to: String, inbound: bool| {
        let (verify, dir, creds) = if inbound {
            ("--dest-tls-verify=true", "--dest-cert-dir", "--dest-creds")
        } else {
            ("--src-tls-verify=true", "--src-cert-dir", "--src-creds")
        };
        let args: Vec<String> = [
            "--policy",
            &policy,
            "copy",
            "--all",
            "--preserve-digests",
            verify,
            dir,
            &cert_dir,
            creds,
            "alice:alice-password",
            &from,
            &to,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tokio::process::Command::new("skopeo")
                .args(&args)
                .output()
                .await
                .expect("skopeo runs")
        }
    };

    let refused = skopeo_copy(
        wrong_dir.clone(),
        format!("oci:{source}:1"),
        remote.clone(),
        true,
    )
    .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("x509") || stderr.contains("certificate"),
        "{stderr}"
    );
    let pushed = skopeo_copy(
        cert_dir.clone(),
        format!("oci:{source}:1"),
        remote.clone(),
        true,
    )
    .await;
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let copy = path("copy");
    let pulled = skopeo_copy(
        cert_dir.clone(),
        remote.clone(),
        format!("oci:{copy}:1"),
        false,
    )
    .await;
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    assert_eq!(
        std::fs::read(Path::new(&copy).join("index.json")).unwrap(),
        std::fs::read(Path::new(&source).join("index.json")).unwrap()
    );

    // podman with storage and credentials of its own.
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root".to_string(),
            path("podman-root"),
            "--runroot".to_string(),
            path("podman-run"),
            "--storage-driver".to_string(),
            "vfs".to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        all
    };
    let auth_file = path("auth.json");
    let podman_env = [("REGISTRY_AUTH_FILE", auth_file.as_str())];
    let tls_args = ["--tls-verify=true", "--cert-dir", cert_dir.as_str()];
    let podman_run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("podman", &args, &podman_env).await
    };
    let mut login = vec!["login"];
    login.extend(tls_args);
    login.extend(["-u", "alice", "-p", "alice-password", registry.as_str()]);
    let said = podman_run(podman(&login)).await;
    assert!(said.contains("Login Succeeded"), "{said}");
    let pulled_name = format!("{registry}/alice/multi:1");
    let pushed_name = format!("{registry}/alice/by-podman:1");
    let mut pull = vec!["pull"];
    pull.extend(tls_args);
    pull.push(&pulled_name);
    podman_run(podman(&pull)).await;
    podman_run(podman(&["tag", &pulled_name, &pushed_name])).await;
    let mut push = vec!["push"];
    push.extend(tls_args);
    push.push(&pushed_name);
    podman_run(podman(&push)).await;

    app.bearer = Some(
        token(
            &app,
            Some(("alice", "alice-password")),
            &[
                "repository:alice/multi:pull",
                "repository:alice/by-podman:pull",
            ],
        )
        .await,
    );
    let index = app.head("/v2/alice/multi/manifests/1").await;
    assert_eq!(header(&index, "docker-content-digest"), index_digest);
    let by_podman = app.head("/v2/alice/by-podman/manifests/1").await;
    assert_eq!(by_podman.status(), StatusCode::OK);
}

/// The binary: `berth tls self-signed` writes what `berth serve` then
/// serves, and a pair that cannot be served stops start-up naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_files_are_what_serve_serves() {
    use crate::cli::berth;
    use tokio::io::AsyncBufReadExt;
    map_test_host();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let self_signed = || {
        let mut command = berth();
        command
            .args(["--data-dir", data_dir, "tls", "self-signed"])
            .args(["--host", HOST, "--ip", "::1"])
            .env("BERTH_LISTEN", "[::1]:5443");
        command
    };
    let made = self_signed().output().await.unwrap();
    assert!(made.status.success(), "{made:?}");
    let said = String::from_utf8_lossy(&made.stdout);
    let tls_dir = data.path().join("tls");
    for line in [
        format!("  cert_file = \"{}\"", tls_dir.join("server.crt").display()),
        format!("  key_file = \"{}\"", tls_dir.join("server.key").display()),
        format!("/etc/docker/certs.d/{HOST}:5443/ca.crt"),
        format!("/etc/containers/certs.d/{HOST}:5443/ca.crt"),
        format!("[host.\"https://{HOST}:5443\"]"),
        "/etc/docker/certs.d/[::1]:5443/ca.crt".to_string(),
    ] {
        assert!(said.contains(&line), "{line} missing from:\n{said}");
    }
    let again = self_signed().output().await.unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists; pass --force"),
        "{again:?}"
    );
    assert!(
        self_signed()
            .arg("--force")
            .status()
            .await
            .unwrap()
            .success()
    );

    let serve = |key_file: PathBuf| {
        let mut command = berth();
        command
            .args(["--data-dir", data_dir, "serve"])
            .env("BERTH_LISTEN", "[::1]:0")
            .env("BERTH_TLS_CERT_FILE", tls_dir.join("server.crt"))
            .env("BERTH_TLS_KEY_FILE", key_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    use std::process::Stdio;
    let mut child = serve(tls_dir.join("server.key")).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let address: SocketAddr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("address=").nth(1) {
                assert!(line.contains("scheme=\"https\""), "{line}");
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        }
        panic!("berth exited before listening");
    })
    .await
    .expect("berth starts listening");
    let ca_pem = std::fs::read_to_string(tls_dir.join("ca.crt")).unwrap();
    let client = client_trusting(&ca_pem, address).build().unwrap();
    let challenge = client
        .get(format!("https://{HOST}:{}/v2/", address.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    let pid = child.id().unwrap().to_string();
    run("kill", &["-TERM", &pid], &[]).await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("berth stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");

    let wrong_key = serve(tls_dir.join("ca.crt")).output().await.unwrap();
    assert!(!wrong_key.status.success());
    let stderr = String::from_utf8_lossy(&wrong_key.stderr);
    let named = format!("{}: no PEM private key", tls_dir.join("ca.crt").display());
    assert!(stderr.contains(&named), "{stderr}");
    let half = berth()
        .args(["--data-dir", data_dir, "serve"])
        .env("BERTH_TLS_CERT_FILE", tls_dir.join("server.crt"))
        .output()
        .await
        .unwrap();
    assert_eq!(half.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&half.stderr).contains("invalid setting `tls.key_file`"),
        "{half:?}"
    );
}
