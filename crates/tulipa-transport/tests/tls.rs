//! TLS with certificates made in the test (rcgen), on real sockets on 127.0.0.1.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};
use tulipa_futures::run;
use tulipa_transport::streams::{start_server, StreamReader, StreamWriter, DEFAULT_LIMIT};
use tulipa_transport::{
    create_connection, tls, ConnectOptions, Error, Protocol, ServerOptions, Transport,
};

struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn identity(names: &[&str]) -> Identity {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    Identity {
        cert: ck.cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
    }
}

fn expired_identity() -> Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    Identity {
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

fn client_trusting(cert: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut cfg = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

async fn echo(r: StreamReader, w: StreamWriter) -> tulipa_transport::Result<()> {
    loop {
        let chunk = r.read(65536).await?;
        if chunk.is_empty() {
            break;
        }
        w.write(&chunk)?;
        w.drain().await?;
    }
    w.close();
    Ok(())
}

async fn tls_echo_server(
    id: &Identity,
    alpn: &[&[u8]],
) -> tulipa_transport::Result<tulipa_transport::Server> {
    let mut o = ServerOptions::default();
    o.tls = Some(tls::server_config(
        vec![id.cert.clone()],
        id.key.clone_key(),
        alpn,
    )?);
    start_server(echo, "127.0.0.1", 0, DEFAULT_LIMIT, o).await
}

/// Collects plaintext and the TLS details the client saw.
#[derive(Default)]
struct Client {
    transport: Option<Transport>,
    got: std::rc::Rc<std::cell::RefCell<Vec<u8>>>,
    /// Set once `want` bytes arrived.
    want: usize,
    full: tulipa_futures::sync::Event,
    lost: tulipa_futures::sync::Event,
}

impl Protocol for Client {
    fn connection_made(&mut self, t: Transport) {
        self.transport = Some(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
        if self.got.borrow().len() >= self.want {
            self.full.set();
        }
    }
    fn connection_lost(&mut self, _exc: Option<Error>) {
        self.lost.set();
        self.transport = None;
    }
}

fn connect_options(cfg: Arc<ClientConfig>, name: &str) -> ConnectOptions {
    let mut o = ConnectOptions::default();
    o.tls = Some(cfg);
    o.server_hostname = Some(name.to_owned());
    o
}

#[test]
fn handshake_echo_and_negotiated_details() {
    run(async {
        let id = identity(&["localhost"]);
        let server = tls_echo_server(&id, &[b"h2", b"tulipa/1"]).await?;
        let port = server.local_addr().unwrap().port();
        let data: Vec<u8> = (0..1_048_576u32).map(|i| (i % 241) as u8).collect();
        let client = Client {
            want: data.len(),
            ..Client::default()
        };
        let (got, full, lost) = (client.got.clone(), client.full.clone(), client.lost.clone());
        let t = create_connection(
            move || client,
            "127.0.0.1",
            port,
            connect_options(client_trusting(&id.cert, &[b"tulipa/1"]), "localhost"),
        )
        .await?;
        let info = t.tls_info().expect("a TLS transport reports its session");
        assert_eq!(info.alpn_protocol.as_deref(), Some(&b"tulipa/1"[..]));
        assert_eq!(info.protocol_version.as_deref(), Some("TLSv1_3"));
        assert!(info.cipher_suite.is_some());
        assert_eq!(info.peer_certificates.len(), 1);
        assert!(!t.can_write_eof(), "no half-close over TLS");
        assert!(t.write_eof().is_err());
        // 1 MiB through TLS and back.
        t.write(&data)?;
        full.wait().await?;
        assert!(*got.borrow() == data);
        t.close(); // close_notify, then the server's echo loop sees EOF and closes too
        lost.wait().await?;
        server.close();
        Ok(())
    })
    .unwrap();
}

async fn handshake_error(
    server_id: &Identity,
    trusted: &CertificateDer<'static>,
    name: &str,
) -> String {
    let server = tls_echo_server(server_id, &[]).await.unwrap();
    let port = server.local_addr().unwrap().port();
    let r = create_connection(
        Client::default,
        "127.0.0.1",
        port,
        connect_options(client_trusting(trusted, &[]), name),
    )
    .await;
    server.close();
    match r {
        Ok(_) => panic!("the handshake must fail"),
        Err(e) => {
            assert!(matches!(e, Error::Tls { .. }), "a TLS error, got {e:?}");
            e.to_string()
        }
    }
}

#[test]
fn a_name_mismatch_fails_the_connect() {
    let msg = run(async {
        let id = identity(&["localhost"]);
        Ok(handshake_error(&id, &id.cert, "not-localhost.example").await)
    })
    .unwrap();
    assert!(
        msg.contains("NotValidForName") || msg.to_lowercase().contains("name"),
        "{msg}"
    );
}

#[test]
fn an_unknown_ca_fails_the_connect() {
    let msg = run(async {
        let server_id = identity(&["localhost"]);
        let other = identity(&["localhost"]);
        Ok(handshake_error(&server_id, &other.cert, "localhost").await)
    })
    .unwrap();
    assert!(
        msg.contains("UnknownIssuer")
            || msg.contains("BadSignature")
            || msg.contains("certificate"),
        "{msg}"
    );
}

#[test]
fn an_expired_certificate_fails_the_connect() {
    let msg = run(async {
        let id = expired_identity();
        Ok(handshake_error(&id, &id.cert, "localhost").await)
    })
    .unwrap();
    assert!(msg.to_lowercase().contains("expired"), "{msg}");
}

#[test]
fn a_peer_that_stalls_the_handshake_is_dropped_after_the_timeout() {
    // A plain TCP server that accepts and never answers; the loop is virtual so 60 s pass at once.
    let lp = tulipa_loop::EventLoop::new_virtual().unwrap();
    let r = tulipa_futures::run_until_complete(&lp, async {
        let silent = start_server(
            |r, w| async move {
                // Hold the connection open (dropping both halves would close it) and say nothing.
                let _keep = (r, w);
                tulipa_futures::sleep(Duration::from_secs(3600)).await?;
                Ok(())
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let port = silent.local_addr().unwrap().port();
        let id = identity(&["localhost"]);
        let r = create_connection(
            Client::default,
            "127.0.0.1",
            port,
            connect_options(client_trusting(&id.cert, &[]), "localhost"),
        )
        .await;
        silent.close();
        Ok(r.err().map(|e| e.to_string()))
    })
    .unwrap();
    let msg = r.expect("the handshake times out");
    assert!(msg.contains("timed out"), "{msg}");
}

#[test]
fn start_tls_upgrades_a_live_stream_connection() {
    run(async {
        let id = identity(&["localhost"]);
        let server_cfg = tls::server_config(vec![id.cert.clone()], id.key.clone_key(), &[])?;
        let server = start_server(
            move |r, w| {
                let cfg = server_cfg.clone();
                async move {
                    assert_eq!(r.readline().await?, b"STARTTLS\n");
                    w.write(b"OK\n")?;
                    let w = w.start_tls(tls::TlsSide::Server(cfg)).await?;
                    let line = r.readline().await?;
                    w.write(&line)?;
                    w.drain().await?;
                    w.close();
                    Ok(())
                }
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let (r, w) =
            tulipa_transport::streams::open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
        w.write(b"STARTTLS\n")?;
        assert_eq!(r.readline().await?, b"OK\n");
        let w = w
            .start_tls(tls::TlsSide::Client {
                config: client_trusting(&id.cert, &[]),
                server_name: "localhost".into(),
            })
            .await?;
        assert!(w.transport().tls_info().is_some());
        w.write(b"secret over TLS\n")?;
        assert_eq!(r.readline().await?, b"secret over TLS\n");
        server.close();
        Ok(())
    })
    .unwrap();
}

#[test]
fn client_certificates_are_required_and_verified() {
    run(async {
        let server_id = identity(&["localhost"]);
        let client_id = identity(&["client.example"]);
        let mut client_roots = RootCertStore::empty();
        client_roots.add(client_id.cert.clone()).unwrap();
        let mut o = ServerOptions::default();
        o.tls = Some(tls::server_config_with_client_auth(
            vec![server_id.cert.clone()],
            server_id.key.clone_key(),
            client_roots,
            &[],
        )?);
        let server = start_server(echo, "127.0.0.1", 0, DEFAULT_LIMIT, o).await?;
        let port = server.local_addr().unwrap().port();

        // With the right certificate: the session works.
        let mut roots = RootCertStore::empty();
        roots.add(server_id.cert.clone()).unwrap();
        let with_cert = Arc::new(
            ClientConfig::builder()
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(vec![client_id.cert.clone()], client_id.key.clone_key())
                .unwrap(),
        );
        let client = Client {
            want: 5,
            ..Client::default()
        };
        let full = client.full.clone();
        let t = create_connection(
            move || client,
            "127.0.0.1",
            port,
            connect_options(with_cert, "localhost"),
        )
        .await?;
        t.write(b"hello")?;
        full.wait().await?;
        t.close();

        // Without one: the server refuses. With TLS 1.3 the client learns it from the server's
        // alert after its own handshake finished, so the connection is lost instead.
        let no_cert = client_trusting(&server_id.cert, &[]);
        let client = Client::default();
        let lost = client.lost.clone();
        match create_connection(
            move || client,
            "127.0.0.1",
            port,
            connect_options(no_cert, "localhost"),
        )
        .await
        {
            Err(e) => assert!(matches!(e, Error::Tls { .. } | Error::Io { .. }), "{e:?}"),
            Ok(t) => {
                let _ = t.write(b"x");
                lost.wait().await?;
            }
        }
        server.close();
        Ok(())
    })
    .unwrap();
}
