//! Name resolution through the default executor: `getaddrinfo` and `getnameinfo` (asyncio's
//! `loop.getaddrinfo` / `loop.getnameinfo`).

use std::net::SocketAddr;

use tulipa_futures::run;
use tulipa_transport::{getaddrinfo, getnameinfo, NameInfoFlags};

#[test]
fn getnameinfo_with_numeric_flags_gives_the_address_and_the_port() {
    let (host, port) = run(async {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let flags = NameInfoFlags::NUMERIC_HOST | NameInfoFlags::NUMERIC_SERV;
        Ok(getnameinfo(addr, flags).await?)
    })
    .unwrap();
    assert_eq!((host.as_str(), port.as_str()), ("127.0.0.1", "8080"));
}

#[test]
fn getnameinfo_names_the_loopback_address() {
    let (host, port) = run(async {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        Ok(getnameinfo(addr, NameInfoFlags::NUMERIC_SERV).await?)
    })
    .unwrap();
    // /etc/hosts names 127.0.0.1 (usually "localhost"); the numeric form would mean no lookup.
    assert!(!host.is_empty());
    assert_ne!(host, "127.0.0.1", "a name, not the address");
    assert_eq!(port, "8080");
    // The name resolves back to the address.
    let back = run(async move { Ok(getaddrinfo(&host, 8080).await?) }).unwrap();
    assert!(
        back.contains(&"127.0.0.1:8080".parse().unwrap()),
        "{back:?}"
    );
}

#[test]
fn name_info_flags_combine_and_show_their_names() {
    let f = NameInfoFlags::NUMERIC_HOST | NameInfoFlags::DGRAM;
    assert!(f.contains(NameInfoFlags::NUMERIC_HOST) && f.contains(NameInfoFlags::DGRAM));
    assert!(!f.contains(NameInfoFlags::NAME_REQUIRED));
    assert_eq!(NameInfoFlags::from_bits(f.bits()), f);
    assert_eq!(format!("{f:?}"), "NameInfoFlags(NUMERIC_HOST | DGRAM)");
    assert_eq!(format!("{:?}", NameInfoFlags::NONE), "NameInfoFlags(NONE)");
}

#[test]
fn getaddrinfo_of_a_name_that_cannot_exist_is_a_resolve_error() {
    // ".invalid" is reserved (RFC 2606): no resolver answers it, with or without a network.
    let err =
        run(async { Ok(getaddrinfo("no-such-host.invalid", 80).await.unwrap_err()) }).unwrap();
    assert!(
        matches!(err, tulipa_transport::Error::Resolve { port: 80, .. }),
        "{err}"
    );
}
