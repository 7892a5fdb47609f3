//! Accepting HTTP connections from the internet: a cap on connections open at once, a back-off
//! when `accept` fails (out of file descriptors, say) instead of a busy loop, and a read-silence
//! timeout for any stream. The click service and the admin listener accept through here; the SMTP
//! gateway keeps its own limits (total and per-IP, answered with 421 as SMTP expects).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// A listener with a connection cap.
pub struct Gate {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    name: &'static str,
}

/// Held by a connection for as long as it is open: dropping it frees a slot.
pub type Slot = OwnedSemaphorePermit;

impl Gate {
    pub fn new(listener: TcpListener, max_connections: usize, name: &'static str) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            name,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, once a slot is free. While every slot is taken, new connections wait
    /// in the kernel's backlog rather than costing us a descriptor each. Errors from `accept`
    /// (`EMFILE`, `ENFILE`, `ECONNABORTED`…) are logged and retried after a growing pause, so a
    /// process out of descriptors neither spins nor stops serving the connections it has.
    pub async fn accept(&self) -> (TcpStream, SocketAddr, Slot) {
        let mut pause = Duration::from_millis(5);
        loop {
            let slot = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return (stream, peer, slot);
                }
                Err(error) => {
                    drop(slot);
                    tracing::warn!(listener = self.name, %error, pause_ms = pause.as_millis() as u64, "accept failed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// A stream whose reads fail with `TimedOut` after `limit` of silence: a peer that stops sending
/// mid-request cannot hold its connection (and our descriptor) forever.
pub struct ReadTimeout<S> {
    inner: S,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> ReadTimeout<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadTimeout<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.timer = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = this.limit;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timer = None;
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
