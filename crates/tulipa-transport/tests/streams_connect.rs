//! `open_connection_with`: asyncio's `open_connection(**kwds)`, the connection options passed
//! on to `create_connection` (a local address; TLS, the streams then carrying plaintext).

mod common;
mod streams_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tulipa_transport::streams::{open_connection_with, DEFAULT_LIMIT};
use tulipa_transport::ConnectOptions;

use common::run;
use streams_support::{next_accepted, server_handing_out};

#[test]
fn open_connection_with_binds_the_local_address() {
    run(async {
        let (server, accepted) = server_handing_out(DEFAULT_LIMIT).await?;
        let port = server.local_addr().unwrap().port();
        // 127.0.0.2 is loopback too (Linux routes all of 127/8): a source address the default
        // connect would never pick.
        let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let mut options = ConnectOptions::default();
        options.local_addr = Some(SocketAddr::new(local, 0));
        let (cr, cw) = open_connection_with("127.0.0.1", port, DEFAULT_LIMIT, options).await?;
        assert_eq!(cw.transport().local_addr().map(|a| a.ip()), Some(local));
        let (sr, sw) = next_accepted(&accepted).await?;
        assert_eq!(sw.transport().peer_addr(), cw.transport().local_addr());
        cw.write(b"ping\n")?;
        assert_eq!(sr.readline().await?, b"ping\n");
        sw.write(b"pong\n")?;
        assert_eq!(cr.readline().await?, b"pong\n");
        cw.close();
        sw.close();
        server.close();
        Ok(())
    });
}

#[test]
fn open_connection_with_a_taken_local_address_fails_clearly() {
    run(async {
        let (server, _accepted) = server_handing_out(DEFAULT_LIMIT).await?;
        let taken = server.local_addr().unwrap();
        let mut options = ConnectOptions::default();
        options.local_addr = Some(taken);
        let err = open_connection_with("127.0.0.1", taken.port(), DEFAULT_LIMIT, options)
            .await
            .unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::AddrInUse),
            "{err:?}"
        );
        server.close();
        Ok(())
    });
}

#[cfg(feature = "tls")]
mod tls_streams {
    use std::sync::Arc;

    use futures_lite::io::{AsyncBufReadExt, AsyncWriteExt};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ClientConfig, RootCertStore};
    use tulipa_transport::streams::{open_connection_with, start_server, DEFAULT_LIMIT};
    use tulipa_transport::{tls, ConnectOptions, ServerOptions};

    use super::common::run;

    #[test]
    fn open_connection_with_tls_reads_and_writes_plaintext() {
        run(async {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            let cert = ck.cert.der().clone();
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
            let mut so = ServerOptions::default();
            so.tls = Some(tls::server_config(vec![cert.clone()], key, &[])?);
            let server = start_server(
                |reader, writer| async move {
                    let line = reader.readline().await?;
                    writer.write(&line.to_ascii_uppercase())?;
                    writer.close();
                    Ok(())
                },
                "127.0.0.1",
                0,
                DEFAULT_LIMIT,
                so,
            )
            .await?;
            let port = server.local_addr().unwrap().port();
            let mut roots = RootCertStore::empty();
            roots.add(cert).unwrap();
            let cfg = ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let mut options = ConnectOptions::default();
            options.tls = Some(Arc::new(cfg));
            options.server_hostname = Some("localhost".to_owned());
            let (mut cr, mut cw) =
                open_connection_with("127.0.0.1", port, DEFAULT_LIMIT, options).await?;
            assert!(cw.transport().tls_info().is_some(), "a TLS connection");
            cw.write_all(b"hello over tls\n").await?;
            cw.flush().await?;
            let mut line = String::new();
            cr.read_line(&mut line).await?;
            assert_eq!(line, "HELLO OVER TLS\n");
            AsyncWriteExt::close(&mut cw).await?;
            server.close();
            Ok(())
        });
    }
}
