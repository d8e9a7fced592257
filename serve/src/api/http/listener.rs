//! The REST port's accept loop: HTTP/1.1 and HTTP/2 (prior knowledge, or ALPN over TLS) on one listener,
//! TLS when configured (the handshake within the header-read timeout, off the accept loop), each connection
//! within the port's cap ([`ConnectionSlots`]; over it a 429 and a close), a header-read timeout that also
//! closes idle keep-alive connections, HTTP/2 stream and keep-alive limits, and a graceful drain: on
//! shutdown the listener closes, idle connections close, and requests in flight (streams included) finish.

use std::convert::Infallible;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::api::connections::{ConnectionLimits, ConnectionSlots, after_accept_error, secure};

/// Serves `app` on `listener` until `shutdown` fires, then waits for open connections to finish (the caller
/// bounds the wait with the grace period).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout()).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .keep_alive_interval(limits.keepalive())
        .keep_alive_timeout(limits.keepalive_timeout());
    let slots = ConnectionSlots::new(limits.connections_per_port(), "http");
    let graceful = GracefulShutdown::new();
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    after_accept_error(&e).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let admitted = match slots.admit(tcp) {
            Ok(admitted) => admitted,
            Err(tcp) => {
                tokio::spawn(refuse(tcp));
                continue;
            }
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut app = app.clone();
            async move {
                Ok::<_, Infallible>(app.call(request.map(axum::body::Body::new)).await.unwrap_or_else(|e| match e {}))
            }
        });
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        let handshake = limits.header_read_timeout();
        tokio::spawn(async move {
            let Some(conn) = secure(admitted, tls.as_ref(), handshake).await else { return };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(conn), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The answer of a connection over the cap: 429 with `Retry-After`, then the connection is closed.
async fn refuse(mut tcp: TcpStream) {
    const BODY: &str = r#"{"error":{"message":"the server has as many open connections as it takes (connections.max_connections); retry later","type":"rate_limit_error","param":null,"code":"too_many_connections"}}"#;
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let write = async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
}
