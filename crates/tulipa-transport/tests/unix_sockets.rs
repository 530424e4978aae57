//! Unix-domain stream sockets: connect, serve, stale socket files.

use std::path::PathBuf;

use tulipa_futures::run;
use tulipa_transport::streams::{open_unix_connection, start_unix_server, DEFAULT_LIMIT};
use tulipa_transport::ServerOptions;

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tulipa-unix-{}-{name}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join("sock")
}

#[test]
fn unix_stream_echo_round_trip_and_the_socket_file_is_removed_on_close() {
    let path = temp_path("echo");
    let p2 = path.clone();
    run(async move {
        let server = start_unix_server(
            |r, w| async move {
                let line = r.readline().await?;
                w.write(&line)?;
                w.drain().await?;
                w.close();
                Ok(())
            },
            &p2,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        assert!(p2.exists());
        let (r, w) = open_unix_connection(&p2, DEFAULT_LIMIT).await?;
        w.write(b"over a unix socket\n")?;
        assert_eq!(r.readline().await?, b"over a unix socket\n");
        assert_eq!(r.read(10).await?, b"");
        server.close();
        assert!(!p2.exists());
        Ok(())
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_regular_file_is_refused() {
    let path = temp_path("stale");
    // A stale socket: bound by a listener that is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let p2 = path.clone();
    run(async move {
        let server = start_unix_server(
            |_r, _w| async { Ok(()) },
            &p2,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        server.close();
        std::fs::write(&p2, b"not a socket").unwrap();
        let refused = start_unix_server(
            |_r, _w| async { Ok(()) },
            &p2,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await;
        let err = refused.expect_err("a regular file must not be replaced");
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AddrInUse));
        assert!(p2.exists(), "the regular file is left alone");
        Ok(())
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn connecting_to_a_missing_unix_socket_is_not_found() {
    let path = temp_path("missing");
    let r = run(async move {
        let r = open_unix_connection(&path, DEFAULT_LIMIT).await;
        Ok(r.err().and_then(|e| e.io_kind()))
    })
    .unwrap();
    assert_eq!(r, Some(std::io::ErrorKind::NotFound));
}

#[test]
fn an_accepted_unix_connection_is_non_blocking_and_knows_its_socket_path() {
    use std::cell::RefCell;
    use std::rc::Rc;

    let path = temp_path("names");
    let p2 = path.clone();
    run(async move {
        type Seen = (Option<PathBuf>, bool, Option<bool>);
        let seen: Rc<RefCell<Option<Seen>>> = Rc::default();
        let s2 = seen.clone();
        let server = start_unix_server(
            move |_r, w| {
                let t = w.transport();
                *s2.borrow_mut() = Some((
                    t.sockname()
                        .and_then(|a| a.as_pathname().map(PathBuf::from)),
                    t.local_addr().is_none() && t.peer_addr().is_none(),
                    t.with_socket(|s| s.nonblocking().unwrap()),
                ));
                async move {
                    w.write(b"seen\n")?;
                    w.drain().await?;
                    w.close();
                    Ok(())
                }
            },
            &p2,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let (r, _w) = open_unix_connection(&p2, DEFAULT_LIMIT).await?;
        assert_eq!(r.readline().await?, b"seen\n");
        let seen = seen
            .borrow_mut()
            .take()
            .expect("the server saw the connection");
        assert_eq!(
            seen.0.as_deref(),
            Some(p2.as_path()),
            "sockname is the path"
        );
        assert!(seen.1, "no IP addresses on a Unix socket");
        assert_eq!(seen.2, Some(true), "non-blocking");
        server.close();
        Ok(())
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
