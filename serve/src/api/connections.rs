//! Connection hygiene shared by both ports: the `[connections]` limits on connections and streams, a cap on
//! open connections (a connection over it is answered and closed at once, never left unanswered at the
//! file-descriptor limit), the stream wrapper whose drop frees the connection's slot, and the TLS handshake
//! both ports share ([`secure`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// File descriptors kept for model files, the write-ahead logs, Redis and the other port.
const RESERVED_FDS: usize = 256;

/// The connection limits of both ports (the `[connections]` table).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Most open connections per port; `None`: half of the file descriptors the process may open, less a
    /// reserve, at most 10,000.
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers; an idle keep-alive connection is closed after it too.
    pub header_read_timeout_secs: u64,
    /// Seconds between two pieces of a request body before the request is given up (408).
    pub body_read_timeout_secs: u64,
    /// Most concurrent HTTP/2 streams per connection (gRPC calls, or HTTP/2 requests on the REST port).
    pub max_streams_per_connection: u32,
    /// Seconds between HTTP/2 keep-alive pings; a peer that does not answer one within 20 s is dropped.
    pub keepalive_secs: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: None,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 30,
            max_streams_per_connection: 256,
            keepalive_secs: 30,
        }
    }
}

impl ConnectionLimits {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_connections != Some(0), "max_connections must be at least 1");
        anyhow::ensure!(self.header_read_timeout_secs > 0, "header_read_timeout_secs must be at least 1");
        anyhow::ensure!(self.body_read_timeout_secs > 0, "body_read_timeout_secs must be at least 1");
        anyhow::ensure!(self.max_streams_per_connection > 0, "max_streams_per_connection must be at least 1");
        anyhow::ensure!(self.keepalive_secs > 0, "keepalive_secs must be at least 1");
        Ok(())
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }

    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_secs)
    }

    /// How long a keep-alive ping may go unanswered.
    pub fn keepalive_timeout(&self) -> Duration {
        Duration::from_secs(20)
    }

    /// The cap per port: as configured, or derived from the process's file-descriptor limit.
    pub fn connections_per_port(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            open_files_limit().map_or(1_000, |fds| (fds.saturating_sub(RESERVED_FDS) / 2).clamp(16, 10_000))
        })
    }
}

/// The soft limit on open files (Linux `/proc/self/limits`); `None` where it cannot be read.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The open connections of one port, up to its cap.
#[derive(Clone)]
pub struct ConnectionSlots {
    slots: Arc<Semaphore>,
    port: &'static str,
}

impl ConnectionSlots {
    /// `port` labels the metrics (`http` or `grpc`).
    pub fn new(cap: usize, port: &'static str) -> Self {
        ConnectionSlots { slots: Arc::new(Semaphore::new(cap)), port }
    }

    /// The connection with its slot, or `None` when every slot is taken (counted as refused).
    pub fn admit(&self, tcp: TcpStream) -> Result<Admitted, TcpStream> {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::gauge!("ferroserve_open_connections", "port" => self.port).increment(1.0);
                Ok(Admitted { tcp, _slot: Slot { _permit: permit, port: self.port } })
            }
            Err(_) => {
                metrics::counter!("ferroserve_connections_refused_total", "port" => self.port).increment(1);
                Err(tcp)
            }
        }
    }
}

/// Accept errors that concern one connection (it was reset before it was accepted): just go on. Others
/// (out of file descriptors) get a short pause, so the loop does not spin.
pub async fn after_accept_error(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        tracing::warn!(error = %e, "accepting a connection failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Slot {
    _permit: OwnedSemaphorePermit,
    port: &'static str,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("ferroserve_open_connections", "port" => self.port).decrement(1.0);
    }
}

/// An admitted connection: the stream, and its slot, freed when the connection is dropped.
pub struct Admitted {
    tcp: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Admitted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Admitted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp.connect_info()
    }
}

/// A connection as the servers see it: plain, or TLS over an admitted connection.
pub enum Conn {
    Plain(Admitted),
    Tls(Box<tokio_rustls::server::TlsStream<Admitted>>),
}

/// Completes the TLS handshake when `tls` is set (within `timeout`, as a client's headers are); `None`
/// when it fails (logged at debug: scanners and plain-HTTP clients on a TLS port are routine).
pub async fn secure(admitted: Admitted, tls: Option<&tokio_rustls::TlsAcceptor>, timeout: Duration) -> Option<Conn> {
    let Some(acceptor) = tls else { return Some(Conn::Plain(admitted)) };
    match tokio::time::timeout(timeout, acceptor.accept(admitted)).await {
        Ok(Ok(stream)) => Some(Conn::Tls(Box::new(stream))),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_write(cx, buf),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_flush(cx),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_write_vectored(cx, bufs),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(c) => c.is_write_vectored(),
            Conn::Tls(c) => c.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Conn::Plain(c) => c.connect_info(),
            Conn::Tls(c) => c.get_ref().0.connect_info(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_freed_when_connections_drop() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let slots = ConnectionSlots::new(1, "test");
        let connect = || async { TcpStream::connect(addr).await.unwrap() };
        let _c1 = connect().await;
        let first = slots.admit(listener.accept().await.unwrap().0).expect("a free slot");
        let _c2 = connect().await;
        assert!(slots.admit(listener.accept().await.unwrap().0).is_err(), "the cap is one");
        drop(first);
        let _c3 = connect().await;
        assert!(slots.admit(listener.accept().await.unwrap().0).is_ok(), "the slot came back");
    }

    #[test]
    fn the_default_cap_follows_the_descriptor_limit() {
        let limits = ConnectionLimits::default();
        let cap = limits.connections_per_port();
        assert!((16..=10_000).contains(&cap), "{cap}");
        assert_eq!(ConnectionLimits { max_connections: Some(7), ..limits.clone() }.connections_per_port(), 7);
        assert!(ConnectionLimits { max_streams_per_connection: 0, ..limits }.check().is_err());
    }
}
