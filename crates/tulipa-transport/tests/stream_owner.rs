//! A stream connection closes once its reader and writer are both dropped.

use tulipa_futures::run;
use tulipa_transport::streams::{open_connection, start_server, DEFAULT_LIMIT};
use tulipa_transport::ServerOptions;

#[test]
fn a_handler_that_returns_without_close_still_closes_the_connection() {
    run(async {
        let server = start_server(
            |_r, w| async move {
                w.write(b"bye")?;
                Ok(()) // no close(): dropping the reader and writer closes (after flushing)
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let (r, _w) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
        assert_eq!(r.read_to_end().await?, b"bye", "the data arrives, then EOF");
        server.close();
        Ok(())
    })
    .unwrap();
}

#[test]
fn dropping_the_writer_alone_keeps_the_connection_while_the_reader_lives() {
    run(async {
        let server = start_server(
            |r, w| async move {
                let line = r.readline().await?;
                w.write(&line)?;
                w.drain().await?;
                w.close();
                Ok(())
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let (r, w) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
        w.write(b"still reading\n")?;
        drop(w);
        assert_eq!(r.readline().await?, b"still reading\n");
        server.close();
        Ok(())
    })
    .unwrap();
}
