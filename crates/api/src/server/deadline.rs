//! A write deadline for any byte stream: a write or flush that makes no progress for the
//! configured time fails with `TimedOut`, so a peer that stops reading (a zero TCP window) is
//! disconnected and its buffers freed instead of holding a task, a socket and a response
//! forever. Wrapped around the socket under TLS, it covers HTTP/1, HTTP/2, WebSocket upgrades
//! and the event stream alike. Never here: reading limits (the listeners' own timeouts).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `S` with a write deadline; `listener` names it in `rampart_slow_peer_disconnects_total`.
pub(crate) struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    listener: &'static str,
    /// Armed while a write waits (allocated only then): fires when no progress came in time.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub(crate) fn new(inner: S, timeout: Duration, listener: &'static str) -> Self {
        WriteDeadline {
            inner,
            timeout,
            listener,
            stalled: None,
        }
    }

    /// After the inner stream answered `r`: disarm on progress; on `Pending`, arm the deadline
    /// (once) and fail when it has passed.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            metrics::counter!(rampart_core::telemetry::SLOW_PEER_DISCONNECTS, "listener" => self.listener)
                .increment(1);
            tracing::info!(listener = self.listener, "peer stopped reading: closing");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer stopped reading",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A writer whose peer never reads fails after the deadline; one whose peer reads, however
    /// slowly within it, does not.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_fails_after_the_deadline_and_progress_resets_it() {
        let (a, _b) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(a, Duration::from_secs(30), "test");
        // 64 bytes fill the pipe; the next write waits on a reader that never comes.
        w.write_all(&[1; 64]).await.unwrap();
        let started = tokio::time::Instant::now();
        let e = w.write_all(&[2; 10]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));

        // A reader taking 20 s between reads keeps every write alive.
        let (a, mut r) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(a, Duration::from_secs(30), "test");
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 64];
            while got < 256 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                got += tokio::io::AsyncReadExt::read(&mut r, &mut buf)
                    .await
                    .unwrap();
            }
            got
        });
        w.write_all(&[3; 256]).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), 256);
    }
}
