//! Name resolution (asyncio's `loop.getaddrinfo` and `loop.getnameinfo`), run on the loop's
//! default executor so the loop never blocks on DNS. Literal IP addresses are parsed on the spot.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::BitOr;
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

/// Flags of [`getnameinfo`] (the C library's `NI_*` flags, with their values on this
/// platform); combine them with `|`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NameInfoFlags(i32);

impl NameInfoFlags {
    /// No flag: look the host name and the service name up.
    pub const NONE: NameInfoFlags = NameInfoFlags(0);
    /// `NI_NUMERICHOST`: the host as a numeric address, no lookup.
    pub const NUMERIC_HOST: NameInfoFlags = NameInfoFlags(libc::NI_NUMERICHOST);
    /// `NI_NUMERICSERV`: the service as a port number, no lookup.
    pub const NUMERIC_SERV: NameInfoFlags = NameInfoFlags(libc::NI_NUMERICSERV);
    /// `NI_NAMEREQD`: fail when the host has no name (instead of giving the numeric address).
    pub const NAME_REQUIRED: NameInfoFlags = NameInfoFlags(libc::NI_NAMEREQD);
    /// `NI_NOFQDN`: only the host part of a local host's fully qualified name.
    pub const NO_FQDN: NameInfoFlags = NameInfoFlags(libc::NI_NOFQDN);
    /// `NI_DGRAM`: the service is a datagram (UDP) one.
    pub const DGRAM: NameInfoFlags = NameInfoFlags(libc::NI_DGRAM);

    /// The C flags (what asyncio's `getnameinfo(sockaddr, flags)` takes).
    pub const fn bits(self) -> i32 {
        self.0
    }

    /// Flags from their C value (`socket.NI_*` in Python).
    pub const fn from_bits(bits: i32) -> NameInfoFlags {
        NameInfoFlags(bits)
    }

    /// True when every flag of `other` is set here.
    pub const fn contains(self, other: NameInfoFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for NameInfoFlags {
    type Output = NameInfoFlags;
    fn bitor(self, rhs: NameInfoFlags) -> NameInfoFlags {
        NameInfoFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for NameInfoFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::NUMERIC_HOST, "NUMERIC_HOST"),
            (Self::NUMERIC_SERV, "NUMERIC_SERV"),
            (Self::NAME_REQUIRED, "NAME_REQUIRED"),
            (Self::NO_FQDN, "NO_FQDN"),
            (Self::DGRAM, "DGRAM"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect();
        if set.is_empty() {
            write!(f, "NameInfoFlags(NONE)")
        } else {
            write!(f, "NameInfoFlags({})", set.join(" | "))
        }
    }
}

/// The host and service names of `addr` (asyncio's `loop.getnameinfo(sockaddr, flags)`):
/// the C library's `getnameinfo`, run on the loop's default executor. Without
/// [`NameInfoFlags::NUMERIC_HOST`] a reverse lookup may go to DNS; an address without a name
/// gives its numeric form unless [`NameInfoFlags::NAME_REQUIRED`] is set.
///
/// # Cancel safety
///
/// Cancel-safe, as [`getaddrinfo`]: a lookup already running finishes on the executor and
/// its answer is dropped.
///
/// # Errors
///
/// [`Error::Resolve`] (naming the address and port) when the lookup fails, for example with
/// `NAME_REQUIRED` on an address without a name; cancellation.
///
/// # Examples
///
/// ```
/// use tulipa_transport::{getnameinfo, NameInfoFlags};
///
/// tulipa_futures::run(async {
///     let addr = "127.0.0.1:80".parse().unwrap();
///     let numeric = NameInfoFlags::NUMERIC_HOST | NameInfoFlags::NUMERIC_SERV;
///     let (host, port) = getnameinfo(addr, numeric).await?;
///     assert_eq!((host.as_str(), port.as_str()), ("127.0.0.1", "80"));
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub async fn getnameinfo(addr: SocketAddr, flags: NameInfoFlags) -> Result<(String, String)> {
    let lp = EventLoop::running()?;
    let looked_up = run_in_executor(&lp, None, move || {
        dns_lookup::getnameinfo(&addr, flags.bits()).map_err(|e| e.to_string())
    })?
    .await?;
    looked_up.map_err(|reason| Error::Resolve {
        host: Arc::from(addr.ip().to_string()),
        port: addr.port(),
        reason: Arc::from(reason),
    })
}
