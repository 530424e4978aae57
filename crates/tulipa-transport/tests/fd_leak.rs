//! No file descriptor outlives its connection.
//!
//! Alone in its own test binary on purpose: it counts the entries of `/proc/self/fd`, which
//! other tests running in parallel threads of the same process would disturb; its two tests
//! take turns through [`SERIAL`].

mod common;

use common::{run, Log, Rec};
use tulipa_transport::streams::{open_connection, start_server, DEFAULT_LIMIT};
use tulipa_transport::{create_connection, create_server, ConnectOptions, ServerOptions};

/// Held by each test for its whole run: the fd count is process-wide.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("reading /proc/self/fd")
        .count()
}

#[test]
fn fifty_connect_close_cycles_leave_no_fd_behind() {
    if !std::path::Path::new("/proc/self/fd").exists() {
        println!("skipped: no /proc/self/fd on this system");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run(async {
        // One server (with its listening socket) for the whole test; the count starts after it
        // and after one warm-up cycle, so that only per-connection fds are compared.
        let server = create_server(
            || Rec::new(&Log::new()).on_data(|t, d| t.write(d).unwrap()),
            "127.0.0.1",
            0,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let cycle = |i: usize| async move {
            // Protocols: clean close from the client.
            let log = Log::new();
            let l2 = log.clone();
            let t = create_connection(
                move || Rec::new(&l2),
                "127.0.0.1",
                port,
                ConnectOptions::default(),
            )
            .await?;
            t.write(format!("cycle {i}").as_bytes())?;
            log.wait_bytes(6).await?;
            if i % 2 == 0 {
                t.close();
            } else {
                t.abort();
            }
            log.wait_lost().await?;
            Ok::<(), tulipa_futures::Error>(())
        };
        cycle(0).await?;
        let before = open_fds();
        for i in 1..=50 {
            cycle(i).await?;
        }
        // The server side of each connection has seen its EOF and closed by now or soon; wait
        // for the accepted transports through the count itself, bounded by `run`.
        common::until(|| open_fds() <= before).await?;
        assert_eq!(open_fds(), before);
        server.close();
        Ok(())
    });
}

#[test]
fn fifty_stream_servers_and_connections_leave_no_fd_behind() {
    if !std::path::Path::new("/proc/self/fd").exists() {
        println!("skipped: no /proc/self/fd on this system");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    run(async {
        let cycle = || async {
            let server = start_server(
                |reader, writer| async move {
                    let line = reader.readline().await?;
                    writer.write(&line)?;
                    writer.close();
                    writer.wait_closed().await
                },
                "127.0.0.1",
                0,
                DEFAULT_LIMIT,
                ServerOptions::default(),
            )
            .await?;
            let port = server.local_addr().unwrap().port();
            let (reader, writer) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
            writer.write(b"ping\n")?;
            assert_eq!(reader.readline().await?, b"ping\n");
            assert_eq!(reader.read_to_end().await?, b"");
            writer.close();
            writer.wait_closed().await?;
            server.close();
            server.wait_closed().await?;
            Ok::<(), tulipa_futures::Error>(())
        };
        cycle().await?;
        let before = open_fds();
        for _ in 0..50 {
            cycle().await?;
        }
        common::until(|| open_fds() <= before).await?;
        assert_eq!(open_fds(), before);
        Ok(())
    });
}
