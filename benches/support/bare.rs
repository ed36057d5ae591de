//! A bare blob server, for the benchmark's ceiling figures: the least work
//! any registry must do for a push (receive the body and hash it) or a pull
//! (send the bytes), with no HTTP library, no storage, no authentication and
//! no database. Driven by the same client in the same turns as the real
//! servers, it shows how fast this machine lets any server go, and so which
//! ratios against the reference are within reach here at all.
//!
//! It speaks just enough HTTP/1.1 for the benchmark's client: `GET /v2/`,
//! upload sessions (`POST`, `PATCH`, `PUT ?digest=`, checked against the
//! hash), `GET` of the one blob it was started with, sent from memory, and
//! for the small-request rows' ceiling, `HEAD` of the small image's config
//! and `GET` of its manifest, answered from memory with the headers a
//! registry sends (`Docker-Content-Digest`, `Content-Type`, length).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The size of the pieces a body is received in and hashed by.
const CHUNK: usize = 1 << 20;

struct State {
    /// The blob served to pulls, and its digest.
    blob: Bytes,
    digest: String,
    /// Open upload sessions' running hashes, by session id.
    uploads: Mutex<HashMap<u64, Sha256>>,
    next_upload: AtomicU64,
    /// The small image's config (for `HEAD`) and manifest (for `GET`), and their digests.
    config: Bytes,
    config_digest: String,
    manifest: Bytes,
    manifest_digest: String,
}

/// Serves on 127.0.0.1 at a free port until killed. The benchmark finds the
/// port from /proc, as it does Berth's.
pub async fn serve(blob: Bytes, config: Bytes, manifest: Bytes) -> io::Result<()> {
    let digest_of = |bytes: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    let state = Arc::new(State {
        digest: digest_of(&blob),
        blob,
        uploads: Mutex::default(),
        next_upload: AtomicU64::new(1),
        config_digest: digest_of(&config),
        config,
        manifest_digest: digest_of(&manifest),
        manifest,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let state = state.clone();
        // A broken connection ends that connection only.
        tokio::spawn(async move { connection(stream, &state).await.ok() });
    }
}

/// One request's head, as far as this server needs it.
struct Head {
    method: String,
    path: String,
    query: String,
    content_length: usize,
    /// The client waits for `100 Continue` before sending the body (`curl` does, for large bodies).
    expects_continue: bool,
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let head = std::str::from_utf8(head).map_err(|_| invalid("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().ok_or_else(|| invalid("no target"))?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let fields: Vec<(&str, &str)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name, value.trim()))
        .collect();
    let field = |wanted: &str| {
        fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| *value)
    };
    let content_length = field("content-length")
        .map(str::parse)
        .transpose()
        .map_err(|_| invalid("bad Content-Length"))?
        .unwrap_or(0);
    let expects_continue = field("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    Ok(Head {
        method,
        path: path.to_string(),
        query: query.to_string(),
        content_length,
        expects_continue,
    })
}

async fn connection(mut stream: TcpStream, state: &State) -> io::Result<()> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        let head_end = loop {
            if let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if filled == buffer.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
            }
            let read = stream.read(&mut buffer[filled..]).await?;
            if read == 0 {
                return Ok(());
            }
            filled += read;
        };
        let head = parse_head(&buffer[..head_end])?;
        // The body: what came with the head, then reads of at most what is
        // left of it, so nothing of a next request is read here. An upload's
        // body is hashed on a thread of its own while the next bytes are
        // received, as a real server would.
        let hashing = body_hasher(&head, state).map(|mut hasher| {
            let (chunks, mut received) = mpsc::channel::<Bytes>(4);
            let hashed = tokio::task::spawn_blocking(move || {
                while let Some(chunk) = received.blocking_recv() {
                    hasher.update(&chunk);
                }
                hasher
            });
            (chunks, hashed)
        });
        if head.expects_continue {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let with_head = (filled - head_end).min(head.content_length);
        if let Some((chunks, _)) = &hashing {
            let first = Bytes::copy_from_slice(&buffer[head_end..head_end + with_head]);
            chunks.send(first).await.map_err(io::Error::other)?;
        }
        buffer.copy_within(head_end + with_head..filled, 0);
        filled -= head_end + with_head;
        let mut remaining = head.content_length - with_head;
        while remaining > 0 {
            let mut chunk = BytesMut::with_capacity(remaining.min(CHUNK));
            while chunk.len() < chunk.capacity() {
                if stream.read_buf(&mut chunk).await? == 0 {
                    return Ok(());
                }
            }
            remaining -= chunk.len();
            if let Some((chunks, _)) = &hashing {
                chunks
                    .send(chunk.freeze())
                    .await
                    .map_err(io::Error::other)?;
            }
        }
        let hasher = match hashing {
            Some((chunks, hashed)) => {
                drop(chunks);
                Some(hashed.await?)
            }
            None => None,
        };
        respond(&mut stream, &head, hasher, state).await?;
    }
}

/// The running hash a request's body goes into: a new one for an upload's
/// first bytes, the session's for the rest; none for other requests.
fn body_hasher(head: &Head, state: &State) -> Option<Sha256> {
    let id = upload_id(&head.path)?;
    if !matches!(head.method.as_str(), "PATCH" | "PUT") {
        return None;
    }
    state.uploads.lock().unwrap().remove(&id)
}

fn upload_id(path: &str) -> Option<u64> {
    path.rsplit_once("/blobs/uploads/")?.1.parse().ok()
}

async fn respond(
    stream: &mut TcpStream,
    head: &Head,
    hasher: Option<Sha256>,
    state: &State,
) -> io::Result<()> {
    let reply = |status: &str, location: Option<&str>| {
        let location = location.map_or(String::new(), |l| format!("Location: {l}\r\n"));
        format!("HTTP/1.1 {status}\r\n{location}Content-Length: 0\r\n\r\n")
    };
    let response = match (head.method.as_str(), hasher) {
        ("GET", _) if head.path == "/v2/" => reply("200 OK", None),
        ("GET", _) if head.path.ends_with(&format!("/blobs/{}", state.digest)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                state.blob.len()
            );
            stream.write_all(head.as_bytes()).await?;
            return stream.write_all(&state.blob).await;
        }
        ("HEAD", _)
            if head
                .path
                .ends_with(&format!("/blobs/{}", state.config_digest)) =>
        {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
             Docker-Content-Digest: {}\r\nContent-Length: {}\r\n\r\n",
                state.config_digest,
                state.config.len()
            )
        }
        ("GET", _) if head.path.contains("/manifests/") => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nDocker-Content-Digest: {}\r\n\
                 Content-Length: {}\r\n\r\n",
                super::MANIFEST_TYPE,
                state.manifest_digest,
                state.manifest.len()
            );
            // One write, as a server that builds its response in memory does.
            let mut response = Vec::with_capacity(head.len() + state.manifest.len());
            response.extend_from_slice(head.as_bytes());
            response.extend_from_slice(&state.manifest);
            return stream.write_all(&response).await;
        }
        ("POST", _) if head.path.ends_with("/blobs/uploads/") => {
            let id = state.next_upload.fetch_add(1, Ordering::Relaxed);
            state.uploads.lock().unwrap().insert(id, Sha256::new());
            reply("202 Accepted", Some(&format!("{}{id}", head.path)))
        }
        ("PATCH", Some(hasher)) => {
            let id = upload_id(&head.path).expect("a hasher comes from an upload path");
            state.uploads.lock().unwrap().insert(id, hasher);
            reply("202 Accepted", Some(&head.path))
        }
        ("PUT", Some(hasher)) => {
            let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
            let expected = head
                .query
                .split('&')
                .find_map(|pair| pair.strip_prefix("digest="))
                .map(|d| d.replace("%3A", ":").replace("%3a", ":"));
            if expected.as_deref() == Some(digest.as_str()) {
                reply("201 Created", Some(&format!("/blobs/{digest}")))
            } else {
                reply("400 Bad Request", None)
            }
        }
        _ => reply("404 Not Found", None),
    };
    stream.write_all(response.as_bytes()).await
}
