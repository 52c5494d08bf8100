//! A TCP listener whose connections close after a period without any progress.
//!
//! `axum::serve` gives no way to set hyper's header-read timeout, so a client that opens a connection and then
//! sends nothing (or stops halfway through its request head, or stops reading a response) would hold the
//! connection, and any response buffered for it, forever. [`IdleTimeoutIo`] fails the connection's next read once
//! neither a read nor a write has made progress for the idle period; hyper then closes the connection.
//!
//! The period must exceed the longest legitimate silence: a request's work runs with no I/O for at most the request
//! timeout, after which the answer (200 or 504) is written. So the service uses the request timeout plus a margin.
//! Idle keep-alive connections are closed after the same period.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Wraps a bound `TcpListener`; every accepted stream gets `TCP_NODELAY` and the idle timeout.
#[derive(Debug)]
pub struct IdleTimeoutListener {
    inner: TcpListener,
    idle: Duration,
}

impl IdleTimeoutListener {
    pub fn new(inner: TcpListener, idle: Duration) -> Self {
        IdleTimeoutListener { inner, idle }
    }
}

impl axum::serve::Listener for IdleTimeoutListener {
    type Io = IdleTimeoutIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // TcpListener's own `Listener::accept` logs and retries accept errors (e.g. out of file descriptors).
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        // Responses are written in one go; Nagle would only add latency.
        let _ = tcp.set_nodelay(true);
        (IdleTimeoutIo::new(tcp, self.idle), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An I/O stream whose reads fail with `TimedOut` once nothing has been read or written for `idle`.
#[derive(Debug)]
pub struct IdleTimeoutIo<T> {
    inner: T,
    idle: Duration,
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<T> IdleTimeoutIo<T> {
    pub fn new(inner: T, idle: Duration) -> Self {
        let now = Instant::now();
        IdleTimeoutIo { inner, idle, last_progress: now, timer: Box::pin(tokio::time::sleep_until(now + idle)) }
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Pending until the idle period has passed since the last progress; then an error.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let deadline = self.last_progress + self.idle;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= self.last_progress + self.idle => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no progress on the connection for {} s", self.idle.as_secs()),
                    )))
                }
                // Progress happened since the timer was set: loop to re-arm it.
                Poll::Ready(()) => {}
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeoutIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.poll_idle(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeoutIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.progress();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.progress();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Real time, with gaps a fortieth of the idle period so a loaded machine cannot make the first part fail.
    #[tokio::test]
    async fn reads_fail_after_the_idle_period_and_progress_resets_it() {
        let idle = Duration::from_secs(2);
        let gap = Duration::from_millis(50);
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = IdleTimeoutIo::new(a, idle);
        let mut buf = [0u8; 8];

        // Data and writes within the period are progress.
        tokio::time::sleep(gap).await;
        b.write_all(b"hi").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 2);
        tokio::time::sleep(gap).await;
        io.write_all(b"yo").await.unwrap();
        tokio::time::sleep(gap).await;
        b.write_all(b"!").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);

        // Then silence: the read waits out the whole period and fails.
        let start = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= idle - gap, "failed early, after {:?}", start.elapsed());
    }
}
