//! The TLS echo servers of `cargo xtask bench tls`, each run as its own process by the hidden
//! `xtask tls-server <name> --cert FILE --key FILE`: it listens on 127.0.0.1 (a free port),
//! prints `listening on ADDR` on stdout and echoes every plaintext byte back over TLS until it is
//! killed (or until its watchdog ends it, so that no server outlives a broken run).
//!
//! Both servers use the same [`ServerConfig`](tls::ServerConfig), made by
//! [`tulipa_transport::tls::server_config`] from the parent's PEM files: rustls 0.23 defaults
//! with the `ring` provider, no ALPN, no client authentication. Both set `TCP_NODELAY` on their
//! connections (Tulipa's transports do, as asyncio's).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tulipa_transport::tls;

use crate::echo::servers::announce;

/// The servers, as named on the command line.
pub(crate) const SERVERS: [&str; 2] = ["tulipa", "tokio"];

/// The plaintext read buffer of one tokio connection task: one TLS record's worth.
const TASK_BUF: usize = 16 * 1024;

/// The server configuration both servers use, from the PEM files the parent wrote.
pub(crate) fn config(cert: &Path, key: &Path) -> Result<Arc<tls::ServerConfig>, String> {
    let chain = tls::load_certs(cert).map_err(|e| e.to_string())?;
    let key = tls::load_private_key(key).map_err(|e| e.to_string())?;
    tls::server_config(chain, key, &[]).map_err(|e| e.to_string())
}

/// Runs server `name` with `config` until killed, or until `lifetime` has passed.
pub(crate) fn serve(
    name: &str,
    config: Arc<tls::ServerConfig>,
    lifetime: Duration,
) -> Result<(), String> {
    crate::echo::servers::raise_nofile();
    std::thread::spawn(move || {
        std::thread::sleep(lifetime);
        eprintln!("tls-server: lifetime of {lifetime:?} over, exiting");
        std::process::exit(3);
    });
    let r = match name {
        "tulipa" => tulipa(config),
        "tokio" => tokio(config),
        other => {
            return Err(format!(
                "unknown TLS server `{other}` (known: {})",
                SERVERS.join(", ")
            ))
        }
    };
    r.map_err(|e| format!("tls-server {name}: {e}"))
}

// Tulipa: the plain-TCP echo server of `bench echo`, served with `ServerOptions::tls`.

fn tulipa(config: Arc<tls::ServerConfig>) -> io::Result<()> {
    crate::echo::servers::tulipa(|options| options.tls = Some(config))
}

// ---------------------------------------------------------------------------------------------
// tokio: current-thread runtime, tokio-rustls, one task per connection.

fn tokio(config: Arc<tls::ServerConfig>) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        // tokio's `bind` listens with a backlog of 1024, as the Tulipa server above.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        announce(listener.local_addr()?);
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                // Out of descriptors and the like: try the next one.
                Err(_) => continue,
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::task::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; TASK_BUF];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            // tokio-rustls may keep ciphertext back until flushed.
                            if stream.write_all(&buf[..n]).await.is_err()
                                || stream.flush().await.is_err()
                            {
                                break;
                            }
                        }
                    }
                }
                // close_notify, then the socket's write side closes (as Tulipa's `close`).
                let _ = stream.shutdown().await;
            });
        }
    })
}
