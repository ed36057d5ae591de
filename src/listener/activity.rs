//! What one connection is doing, for its two timeouts: the bytes it moves
//! (its stream, wrapped), the requests its handlers are working on, and the
//! request bodies they are waiting for.
//!
//! - *Header read*: a request's headers must be in within
//!   `header_read_timeout` of its first byte; the first request's within
//!   that of the connection being made (or its TLS handshake ending). HTTP/2
//!   connections, whose frames arrive between requests, get it for the first
//!   request only. (Bytes of a next request that came in one read with the
//!   one before count as idle time: the idle timeout still bounds them.)
//! - *Idle*: a connection on which no byte moved for `idle_timeout` is
//!   closed, unless a handler is working on a request (a slow commit moves
//!   no byte). A handler waiting for the client's body counts as idle, so a
//!   stalled upload ends, while a slow one that keeps sending never does.
//!
//! hyper's own `header_read_timeout` is not used: it restarts whenever an
//! HTTP/1.1 connection waits for its next request, which makes it an idle
//! timeout of the same length; and hyper-util's protocol detection reads
//! the first bytes of a plain connection with no timeout at all.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Version;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// No request head is being read.
const NO_HEAD: u64 = u64::MAX;

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    HeaderRead,
    Idle,
}

/// One connection's activity. Times are milliseconds since `started`.
pub struct Activity {
    started: Instant,
    last_io: AtomicU64,
    /// When the request head being read began, or [`NO_HEAD`].
    head_since: AtomicU64,
    /// Requests whose handler has not answered yet.
    handling: AtomicUsize,
    /// Of those, the ones waiting for the client's next body bytes.
    awaiting_client: AtomicUsize,
    /// HTTP/2: bytes between requests are frames, not a request head.
    multiplexed: AtomicBool,
}

impl Activity {
    /// A connection ready for its first request (its clock for that
    /// request's headers starts now).
    pub fn new(multiplexed: bool) -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            last_io: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
            awaiting_client: AtomicUsize::new(0),
            multiplexed: AtomicBool::new(multiplexed),
        })
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if !self.multiplexed.load(Ordering::Relaxed) && self.handling.load(Ordering::Relaxed) == 0 {
            // The first byte of the next request's head.
            let _ = self.head_since.compare_exchange(
                NO_HEAD,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// A request's head is in; the returned guard is its handler at work.
    pub fn request(self: &Arc<Self>, version: Version) -> Handling {
        if version == Version::HTTP_2 {
            self.multiplexed.store(true, Ordering::Relaxed);
        }
        self.handling.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NO_HEAD, Ordering::Relaxed);
        self.touch();
        Handling(self.clone())
    }

    /// Completes when the connection has outlived one of its timeouts.
    pub async fn expired(&self, header_read_timeout: Duration, idle_timeout: Duration) -> Expiry {
        let header_read = header_read_timeout.as_millis() as u64;
        let idle = idle_timeout.as_millis() as u64;
        loop {
            let now = self.now();
            // Any deadline set from now on lies at least this far ahead.
            let mut wake = now + header_read.min(idle);
            let head = self.head_since.load(Ordering::Relaxed);
            if head != NO_HEAD {
                let deadline = head.saturating_add(header_read);
                if now >= deadline {
                    return Expiry::HeaderRead;
                }
                wake = wake.min(deadline);
            }
            let working = self.handling.load(Ordering::Relaxed)
                > self.awaiting_client.load(Ordering::Relaxed);
            if !working {
                let deadline = self.last_io.load(Ordering::Relaxed) + idle;
                if now >= deadline {
                    return Expiry::Idle;
                }
                wake = wake.min(deadline);
            }
            tokio::time::sleep_until(self.started + Duration::from_millis(wake)).await;
        }
    }
}

/// A handler working on a request; dropped when it has answered.
pub struct Handling(Arc<Activity>);

impl Handling {
    /// The request body, counted while the handler waits for it.
    pub fn body(&self, body: Incoming) -> TrackedBody {
        TrackedBody {
            inner: body,
            activity: self.0.clone(),
            waiting: false,
        }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
        // The idle clock restarts with the answer, however long it took.
        self.0.touch();
    }
}

/// A request body that tells its connection when its handler is waiting
/// for the client.
pub struct TrackedBody {
    inner: Incoming,
    activity: Arc<Activity>,
    waiting: bool,
}

impl TrackedBody {
    fn set_waiting(&mut self, waiting: bool) {
        if waiting == self.waiting {
            return;
        }
        self.waiting = waiting;
        if waiting {
            self.activity
                .awaiting_client
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.activity
                .awaiting_client
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.activity.touch();
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.set_waiting(polled.is_pending());
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

/// A connection's stream, noting each byte that moves.
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(30);
    const IDLE: Duration = Duration::from_secs(75);

    async fn expiry_after(activity: &Activity) -> (Expiry, Duration) {
        let start = Instant::now();
        let expiry = activity.expired(HEADER, IDLE).await;
        (expiry, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_must_come_within_the_header_timeout() {
        let activity = Activity::new(false);
        assert_eq!(expiry_after(&activity).await, (Expiry::HeaderRead, HEADER));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_gets_the_idle_timeout() {
        let activity = Activity::new(false);
        drop(activity.request(Version::HTTP_11));
        assert_eq!(expiry_after(&activity).await, (Expiry::Idle, IDLE));
        // The next request's first byte starts its header clock.
        let activity = Activity::new(false);
        drop(activity.request(Version::HTTP_11));
        tokio::time::sleep(Duration::from_secs(10)).await;
        activity.read();
        assert_eq!(expiry_after(&activity).await, (Expiry::HeaderRead, HEADER));
    }

    #[tokio::test(start_paused = true)]
    async fn a_working_handler_keeps_its_connection() {
        let activity = Activity::new(false);
        let handling = activity.request(Version::HTTP_11);
        let watchdog = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.expired(HEADER, IDLE).await })
        };
        tokio::time::sleep(IDLE * 3).await;
        assert!(!watchdog.is_finished());
        drop(handling);
        let start = Instant::now();
        assert_eq!(watchdog.await.unwrap(), Expiry::Idle);
        assert_eq!(start.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_between_requests_are_no_request_head() {
        let activity = Activity::new(true);
        drop(activity.request(Version::HTTP_2));
        tokio::time::sleep(Duration::from_secs(50)).await;
        activity.read();
        assert_eq!(expiry_after(&activity).await, (Expiry::Idle, IDLE));
    }
}
