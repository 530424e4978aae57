//! UDP endpoints: asyncio's test_events datagram cases, on real sockets on 127.0.0.1.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use tulipa_futures::{run, sync::Event};
use tulipa_transport::{
    create_datagram_endpoint, DatagramOptions, DatagramProtocol, DatagramTransport, Error,
};

#[derive(Default)]
struct Log {
    made: usize,
    got: Vec<(Vec<u8>, SocketAddr)>,
    lost: Vec<Option<String>>,
}

struct Recorder {
    log: Rc<RefCell<Log>>,
    arrived: Event,
    echo: Option<DatagramTransport>,
}

impl Recorder {
    /// A recorder whose log and arrival event nobody looks at.
    fn unobserved() -> Recorder {
        Recorder {
            log: Rc::default(),
            arrived: Event::new(),
            echo: None,
        }
    }
}

impl DatagramProtocol for Recorder {
    fn connection_made(&mut self, t: DatagramTransport) {
        self.log.borrow_mut().made += 1;
        self.echo = Some(t);
    }
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        self.log.borrow_mut().got.push((data.to_vec(), addr));
        self.arrived.set();
    }
    fn connection_lost(&mut self, exc: Option<Error>) {
        self.log.borrow_mut().lost.push(exc.map(|e| e.to_string()));
        self.echo = None;
    }
}

fn local() -> DatagramOptions {
    let mut o = DatagramOptions::default();
    o.local_addr = Some("127.0.0.1:0".parse().unwrap());
    o
}

#[test]
fn datagrams_travel_between_two_endpoints_with_their_sender_address() {
    run(async {
        let (la, lb) = (
            Rc::new(RefCell::new(Log::default())),
            Rc::new(RefCell::new(Log::default())),
        );
        let (ea, eb) = (Event::new(), Event::new());
        let (la2, ea2) = (la.clone(), ea.clone());
        let a = create_datagram_endpoint(
            move || Recorder {
                log: la2,
                arrived: ea2,
                echo: None,
            },
            local(),
        )
        .await?;
        let (lb2, eb2) = (lb.clone(), eb.clone());
        let b = create_datagram_endpoint(
            move || Recorder {
                log: lb2,
                arrived: eb2,
                echo: None,
            },
            local(),
        )
        .await?;
        let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        a.sendto(b"ping", Some(pb))?;
        eb.wait().await?;
        b.sendto(b"pong", Some(pa))?;
        ea.wait().await?;
        assert_eq!(lb.borrow().got, vec![(b"ping".to_vec(), pa)]);
        assert_eq!(la.borrow().got, vec![(b"pong".to_vec(), pb)]);
        assert_eq!((la.borrow().made, lb.borrow().made), (1, 1));
        a.close();
        b.close();
        tulipa_futures::sleep(std::time::Duration::ZERO).await?;
        tulipa_futures::sleep(std::time::Duration::ZERO).await?;
        assert_eq!(la.borrow().lost, vec![None]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_connected_endpoint_sends_without_an_address_and_refuses_another_one() {
    run(async {
        let log = Rc::new(RefCell::new(Log::default()));
        let ev = Event::new();
        let (l2, e2) = (log.clone(), ev.clone());
        let server = create_datagram_endpoint(
            move || Recorder {
                log: l2,
                arrived: e2,
                echo: None,
            },
            local(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let mut o = DatagramOptions::default();
        o.remote_addr = Some(("127.0.0.1".into(), port));
        let client = create_datagram_endpoint(Recorder::unobserved, o).await?;
        assert_eq!(client.peer_addr().map(|a| a.port()), Some(port));
        client.sendto(b"hello", None)?;
        ev.wait().await?;
        assert_eq!(log.borrow().got[0].0, b"hello");
        let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(client.sendto(b"x", Some(other)).is_err());
        client.close();
        assert!(matches!(client.sendto(b"late", None), Err(Error::Closed)));
        server.close();
        Ok(())
    })
    .unwrap();
}

#[test]
fn sendto_without_an_address_on_an_unconnected_endpoint_is_an_error() {
    run(async {
        let t = create_datagram_endpoint(Recorder::unobserved, local()).await?;
        assert!(t.sendto(b"x", None).is_err());
        t.abort();
        Ok(())
    })
    .unwrap();
}

/// Records `error_received`; in `datagram_received`, answers with a datagram too large for UDP
/// (`EMSGSIZE` at once, from inside the callback).
struct Oversize {
    t: Option<DatagramTransport>,
    errors: Rc<RefCell<Vec<Error>>>,
    got_error: Event,
    in_callback: Rc<std::cell::Cell<bool>>,
}

impl DatagramProtocol for Oversize {
    fn connection_made(&mut self, t: DatagramTransport) {
        self.t = Some(t);
    }
    fn datagram_received(&mut self, _data: &[u8], addr: SocketAddr) {
        self.in_callback.set(true);
        let t = self.t.clone().expect("connection_made first");
        // The error is reported through error_received, not returned.
        assert!(t.sendto(&vec![0u8; 70_000], Some(addr)).is_ok());
        self.in_callback.set(false);
    }
    fn error_received(&mut self, exc: Error) {
        assert!(
            !self.in_callback.get(),
            "error_received re-entered the protocol"
        );
        self.errors.borrow_mut().push(exc);
        self.got_error.set();
    }
    fn connection_lost(&mut self, _exc: Option<Error>) {
        self.t = None;
    }
}

fn oversize() -> (Oversize, Rc<RefCell<Vec<Error>>>, Event) {
    let errors: Rc<RefCell<Vec<Error>>> = Rc::default();
    let ev = Event::new();
    let p = Oversize {
        t: None,
        errors: errors.clone(),
        got_error: ev.clone(),
        in_callback: Rc::default(),
    };
    (p, errors, ev)
}

/// Waits for `ev`, failing the test after a generous bound instead of hanging.
async fn within_bound(ev: &Event, what: &str) -> tulipa_futures::Result<()> {
    match tulipa_futures::timeout(std::time::Duration::from_secs(20), ev.wait()).await {
        Err(e) if e.is_timeout() => panic!("timed out waiting for {what}"),
        r => r,
    }
}

#[test]
fn a_failed_sendto_inside_datagram_received_reaches_error_received_afterwards() {
    run(async {
        let (p, errors, ev) = oversize();
        let a = create_datagram_endpoint(move || p, local()).await?;
        let addr = a.local_addr().unwrap();
        let b = create_datagram_endpoint(Recorder::unobserved, local()).await?;
        b.sendto(b"go", Some(addr))?;
        within_bound(&ev, "error_received").await?;
        let errors = errors.borrow();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("sendto"), "{}", errors[0]);
        a.close();
        b.close();
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_connected_endpoint_hears_connection_refused_through_error_received() {
    // A port nobody listens on: the kernel answers with ICMP port unreachable, which a
    // connected UDP socket reports as ECONNREFUSED.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    run(async move {
        let (p, errors, ev) = oversize();
        let mut o = DatagramOptions::default();
        o.remote_addr = Some(("127.0.0.1".into(), port));
        let t = create_datagram_endpoint(move || p, o).await?;
        t.sendto(b"anyone?", None)?;
        within_bound(&ev, "error_received").await?;
        let kind = errors.borrow()[0].io_kind();
        assert_eq!(kind, Some(std::io::ErrorKind::ConnectionRefused));
        assert!(!t.is_closing(), "the endpoint stays open");
        t.close();
        Ok(())
    })
    .unwrap();
}

#[test]
fn remote_addr_tries_each_resolved_address_of_the_local_family() {
    run(async {
        let server = create_datagram_endpoint(Recorder::unobserved, local()).await?;
        let port = server.local_addr().unwrap().port();
        // "localhost" may resolve to ::1 first; with an IPv4 local address only 127.0.0.1 fits.
        let mut o = local();
        o.remote_addr = Some(("localhost".into(), port));
        let t = create_datagram_endpoint(Recorder::unobserved, o).await?;
        assert_eq!(
            t.peer_addr(),
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        );
        t.close();
        // No address of the family at all: a clear error.
        let mut o = local();
        o.remote_addr = Some(("::1".into(), port));
        let err = create_datagram_endpoint(Recorder::unobserved, o)
            .await
            .unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::InvalidInput),
            "{err}"
        );
        server.close();
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_remote_addr_failure_keeps_its_error_kind() {
    // The local address is taken: the one attempt fails with AddrInUse, reported as such.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = run(async move {
        let mut o = DatagramOptions::default();
        o.local_addr = Some(taken.local_addr().unwrap());
        o.remote_addr = Some(("127.0.0.1".into(), port));
        let r = create_datagram_endpoint(Recorder::unobserved, o).await;
        Ok(r.err())
    })
    .unwrap()
    .expect("the local address is taken");
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AddrInUse), "{err}");
}
