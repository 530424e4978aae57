//! Name resolution (asyncio's `loop.getaddrinfo`), run on the loop's default executor so the
//! loop never blocks on DNS. Literal IP addresses are parsed on the spot.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use tulipa_futures::rt::EventLoop;
use tulipa_futures::run_in_executor;

use crate::error::{Error, Result};

/// Resolves `host:port` to socket addresses, in the resolver's order.
///
/// # Cancel safety
///
/// Cancel-safe: a cancelled lookup returns `Err(Cancelled)`; the blocking lookup, if already
/// running on the executor, finishes there and its answer is dropped.
///
/// # Errors
///
/// [`Error::Resolve`] when the name does not resolve or gives no address.
pub async fn getaddrinfo(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lp = EventLoop::running()?;
    let name = host.to_owned();
    let looked_up = run_in_executor(&lp, None, move || {
        (name.as_str(), port)
            .to_socket_addrs()
            .map(|it| it.collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    })?
    .await?;
    match looked_up {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(Error::Resolve {
            host: Arc::from(host),
            port,
            reason: Arc::from("no address"),
        }),
        Err(reason) => Err(Error::Resolve {
            host: Arc::from(host),
            port,
            reason: Arc::from(reason),
        }),
    }
}
