//! A connection that stays silent is closed: no byte read or written for the idle timeout ends it,
//! from the end of the TCP accept on (so through the TLS handshake, before a first request and
//! between requests, HTTP/1.1 and HTTP/2 alike). Without it a client that finishes the handshake
//! and sends nothing holds a file descriptor and a task for ever; thousands of them exhaust the
//! process's descriptors. A review in progress never looks idle: its answer is written within the
//! review deadline, which is far shorter.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub struct IdleTimeout<T> {
    inner: T,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> IdleTimeout<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        IdleTimeout { inner, timeout, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }

    fn active(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.timeout);
    }

    /// `Pending` from the connection: an error once the connection has been idle too long (the
    /// deadline's waker is registered, so the connection is polled again when it passes).
    fn pending_or_idle<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no byte in either direction for {:?}: closed as idle", self.timeout),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => self.pending_or_idle(cx),
            error => error,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.active();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => self.pending_or_idle(cx),
            error => error,
        }
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
    use super::IdleTimeout;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn silence_ends_the_connection_and_traffic_keeps_it() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = IdleTimeout::new(server, Duration::from_secs(30));
        let mut client = client;
        let talker = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                client.write_all(b"x").await.unwrap();
            }
            // Then silence, with the connection still open.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(client);
        });
        let started = tokio::time::Instant::now();
        let mut byte = [0u8; 1];
        for _ in 0..5 {
            assert_eq!(server.read(&mut byte).await.unwrap(), 1, "traffic every 20 s keeps it open");
        }
        let err = server.read(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(130) && waited < Duration::from_secs(131), "{waited:?}");
        talker.abort();
    }
}
