//! The accept loop: takes each connection, plain or TLS (HTTP/2 or
//! HTTP/1.1 as ALPN chose, else as the client's first bytes say), and serves
//! the app on it within the `[http]` limits: at most `max_connections` at a
//! time (beyond that the loop stops accepting, and new connections wait in
//! the kernel's queue), a TLS handshake within `tls.handshake_timeout`,
//! request headers within `header_read_timeout`, and no idle connection kept
//! past `idle_timeout` (`activity.rs`). It hands each request the client's
//! address as axum's `ConnectInfo<SocketAddr>`, and at shutdown lets every
//! connection finish the requests it has.
//!
//! Owns `[http]`. Called by `server`; calls `tls` and the leaf `setting`.

mod activity;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::setting::Invalid;
use crate::tls::{Reloading, TlsConfig, TlsError};
use activity::{Activity, Expiry, Tracked};

/// How often, at most, a full house is logged.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// `[http]`: the limits every connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// How long a client may take to send a request's headers, e.g. `30s`.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no byte moving and no request being
    /// worked on, e.g. `75s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How many connections are served at once; more wait to be accepted.
    pub max_connections: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections: 4096,
        }
    }
}

impl HttpConfig {
    pub fn check(self) -> Result<HttpConfig, Invalid> {
        for (key, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(Invalid::new(key, "use a positive duration"));
            }
        }
        if self.max_connections == 0 {
            return Err(Invalid::new("max_connections", "use at least 1"));
        }
        Ok(self)
    }
}

/// How connections are taken: the limits, and TLS when configured.
pub struct Connections {
    limits: HttpConfig,
    tls: Option<Tls>,
}

struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl Connections {
    /// Reads the certificate files now (an error names the file) and keeps
    /// reading them for changes while connections are served.
    pub fn new(limits: HttpConfig, tls: Option<&TlsConfig>) -> Result<Connections, TlsError> {
        let tls = match tls {
            None => None,
            Some(config) => Some(Tls {
                acceptor: Reloading::start(config)?.server_config().into(),
                handshake_timeout: config.handshake_timeout,
            }),
        };
        Ok(Connections { limits, tls })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves `app` on `listener` until `shutdown` completes, then stops
    /// accepting and waits for the connections to finish their requests.
    pub async fn serve(
        self,
        app: axum::Router,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let max_connections = self.limits.max_connections as usize;
        let permits = Arc::new(Semaphore::new(max_connections));
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Header and idle time are watched by `activity`, for both protocols.
        builder.http1().header_read_timeout(None);
        let shared = Arc::new(Shared {
            builder,
            app,
            limits: self.limits,
            tls: self.tls,
        });
        let mut warned_full: Option<Instant> = None;
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = admit(&permits, max_connections, &mut warned_full) => permit,
            };
            let (stream, remote) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(
                shared
                    .clone()
                    .connection(stream, remote, permit, graceful.watcher()),
            );
        }
        drop(listener);
        graceful.shutdown().await;
    }
}

/// A place for one more connection, waiting (after saying so, at most once
/// a minute) while every place is taken.
async fn admit(
    permits: &Arc<Semaphore>,
    max_connections: usize,
    warned: &mut Option<Instant>,
) -> OwnedSemaphorePermit {
    if let Ok(permit) = permits.clone().try_acquire_owned() {
        return permit;
    }
    if warned.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
        tracing::warn!(
            max_connections,
            "every connection place is taken (http.max_connections): new connections wait until one closes"
        );
        *warned = Some(Instant::now());
    }
    permits
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed")
}

/// A failed `accept`: a connection reset before it was taken is nothing;
/// anything else (out of file descriptors) is logged and waited out, as
/// retrying at once would only spin.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

struct Shared {
    builder: auto::Builder<TokioExecutor>,
    app: axum::Router,
    limits: HttpConfig,
    tls: Option<Tls>,
}

impl Shared {
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        remote: SocketAddr,
        _permit: OwnedSemaphorePermit,
        watcher: Watcher,
    ) {
        match &self.tls {
            None => self.http(stream, remote, None, watcher).await,
            Some(tls) => {
                let handshake = tls.acceptor.accept(stream);
                let stream = match tokio::time::timeout(tls.handshake_timeout, handshake).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%remote, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
                let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                self.http(stream, remote, alpn, watcher).await;
            }
        }
    }

    /// Serves HTTP on an established stream until it closes, one of its
    /// timeouts passes, or (shutdown) it has finished its requests.
    async fn http<S>(&self, stream: S, remote: SocketAddr, alpn: Option<Vec<u8>>, watcher: Watcher)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let builder = match alpn.as_deref() {
            Some(b"h2") => self.builder.clone().http2_only(),
            Some(b"http/1.1") => self.builder.clone().http1_only(),
            _ => self.builder.clone(),
        };
        let activity = Activity::new(alpn.as_deref() == Some(b"h2"));
        let service = {
            let activity = activity.clone();
            let app = self.app.clone();
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let handling = activity.request(request.version());
                let mut request = request.map(|body| axum::body::Body::new(handling.body(body)));
                request.extensions_mut().insert(ConnectInfo(remote));
                host_from_authority(&mut request);
                let app = app.clone();
                async move {
                    let response = app.oneshot(request).await;
                    drop(handling);
                    Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                }
            })
        };
        let io = TokioIo::new(Tracked::new(stream, activity.clone()));
        let connection = watcher.watch(builder.serve_connection(io, service).into_owned());
        let expired = activity.expired(self.limits.header_read_timeout, self.limits.idle_timeout);
        tokio::select! {
            result = connection => {
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "connection ended with an error");
                }
            }
            expiry = expired => match expiry {
                Expiry::HeaderRead => tracing::debug!(%remote, "closed: request headers not sent within http.header_read_timeout"),
                Expiry::Idle => tracing::debug!(%remote, "closed: idle for http.idle_timeout"),
            },
        }
    }
}

/// HTTP/2 names the host in the `:authority` pseudo-header, not `Host`;
/// the app builds URLs (the token realm) from `Host`, so it is set from it.
fn host_from_authority<B>(request: &mut hyper::Request<B>) {
    use axum::http::{HeaderValue, header};
    if request.headers().contains_key(header::HOST) {
        return;
    }
    // Host and port only: an authority may carry `user@`.
    let host = request.uri().authority().and_then(|a| {
        let host = match a.port_u16() {
            Some(port) => format!("{}:{port}", a.host()),
            None => a.host().to_string(),
        };
        HeaderValue::from_str(&host).ok()
    });
    if let Some(host) = host {
        request.headers_mut().insert(header::HOST, host);
    }
}

/// Raises the soft limit on open files to the hard one: each connection
/// holds a descriptor, and the usual soft limit (1024) is far below
/// `max_connections`. Returns the limit now in force.
#[cfg(target_os = "linux")]
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(not(target_os = "linux"))]
pub fn raise_open_files_limit() -> Option<u64> {
    None
}

/// Descriptors kept for what is not a client connection: the database
/// pool, blob files being written and read, the logs.
const RESERVED_FILES: u64 = 256;

/// `max_connections` within what the open-files limit allows.
pub fn fit_to_open_files(max_connections: u32, open_files: Option<u64>) -> u32 {
    match open_files {
        Some(limit) => {
            let room = limit.saturating_sub(RESERVED_FILES).max(1);
            max_connections.min(u32::try_from(room).unwrap_or(u32::MAX))
        }
        None => max_connections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_positive() {
        assert_eq!(HttpConfig::default().check().unwrap().max_connections, 4096);
        let zero = |config: HttpConfig| config.check().unwrap_err().key;
        assert_eq!(
            zero(HttpConfig {
                header_read_timeout: Duration::ZERO,
                ..HttpConfig::default()
            }),
            "header_read_timeout"
        );
        assert_eq!(
            zero(HttpConfig {
                idle_timeout: Duration::ZERO,
                ..HttpConfig::default()
            }),
            "idle_timeout"
        );
        assert_eq!(
            zero(HttpConfig {
                max_connections: 0,
                ..HttpConfig::default()
            }),
            "max_connections"
        );
    }

    #[test]
    fn connections_fit_in_the_open_files_limit() {
        assert_eq!(fit_to_open_files(4096, None), 4096);
        assert_eq!(fit_to_open_files(4096, Some(1024)), 768);
        assert_eq!(fit_to_open_files(4096, Some(1 << 20)), 4096);
        assert_eq!(fit_to_open_files(4096, Some(10)), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_one() {
        let now = raise_open_files_limit().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(now, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
