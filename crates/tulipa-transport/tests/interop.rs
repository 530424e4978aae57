//! Tulipa against other TCP implementations, as real processes: Python's standard `socket`
//! module as a client of a Tulipa server and as a server for a Tulipa client, and `curl` as an
//! HTTP client of a Tulipa protocol. A test whose program is missing says so and passes.

mod common;

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::rc::Rc;

use common::{pattern, run, Log, Rec};
use tulipa_futures::rt::EventLoop;
use tulipa_futures::run_in_executor;
use tulipa_transport::streams::{open_connection, DEFAULT_LIMIT};
use tulipa_transport::{create_server, ServerOptions};

/// True when `program --version` runs; otherwise prints why the test is skipped.
fn have(program: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("skipped: {program} is not installed");
    }
    ok
}

/// Waits for `child` on the loop's executor, so the loop keeps serving meanwhile.
async fn wait_child(child: Child) -> tulipa_futures::Result<Output> {
    let lp = EventLoop::running()?;
    Ok(run_in_executor(&lp, None, move || child.wait_with_output())?.await??)
}

/// The client: sends two lines and 1 MiB of the test pattern, half-closes, reads the echo to
/// EOF on a second thread meanwhile, and prints whether it matches.
const PY_CLIENT: &str = r#"
import socket, sys, threading
port = int(sys.argv[1])
blob = bytes(((i * 7 + i // 251) % 251) for i in range(1 << 20))
sent = b"hello from python\nsecond line\n" + blob
s = socket.create_connection(("127.0.0.1", port))
got = []
def reader():
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got.append(chunk)
t = threading.Thread(target=reader)
t.start()
s.sendall(sent)
s.shutdown(socket.SHUT_WR)
t.join()
s.close()
echo = b"".join(got)
print("ok" if echo == sent else "mismatch", len(echo))
"#;

#[test]
fn python_socket_client_talks_to_a_tulipa_echo_server() {
    if !have("python3") {
        return;
    }
    run(async {
        let logs: Rc<RefCell<Vec<Rc<Log>>>> = Rc::default();
        let l2 = logs.clone();
        let server = create_server(
            move || {
                let log = Log::new();
                l2.borrow_mut().push(log.clone());
                Rec::new(&log)
                    .keep_open()
                    .on_data(|t, d| t.write(d).unwrap())
                    .on_eof(|t| t.close())
            },
            "127.0.0.1",
            0,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-c", PY_CLIENT, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let out = wait_child(child).await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "python failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let total = 30 + (1 << 20);
        assert_eq!(stdout.trim(), format!("ok {total}"));
        let log = logs.borrow()[0].clone();
        log.wait_lost().await?;
        assert_eq!(log.received_len(), total);
        assert_eq!(log.kinds(), ["made", "data", "eof", "lost"]);
        server.close();
        Ok(())
    });
}

/// The server: prints its port, greets, reads to EOF, answers with the bytes upper-cased.
const PY_SERVER: &str = r#"
import socket
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
c, _ = srv.accept()
c.sendall(b"greeting from python\n")
data = []
while True:
    chunk = c.recv(65536)
    if not chunk:
        break
    data.append(chunk)
c.sendall(b"".join(data).upper())
c.close()
srv.close()
"#;

#[test]
fn tulipa_stream_client_talks_to_a_python_socket_server() {
    if !have("python3") {
        return;
    }
    let mut child = Command::new("python3")
        .args(["-c", PY_SERVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting python3");
    // The port line, read before the loop starts (a plain blocking read is fine here).
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("reading the python server's port");
    let port: u16 = line.trim().parse().expect("a port number");
    run(async move {
        let (reader, writer) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
        assert_eq!(reader.readline().await?, b"greeting from python\n");
        let mut sent = b"some text, then binary: ".to_vec();
        sent.extend_from_slice(&pattern(1 << 20));
        writer.write(&sent)?;
        writer.drain().await?;
        writer.write_eof()?;
        let answer = reader.read_to_end().await?;
        assert_eq!(answer.len(), sent.len());
        assert!(answer == sent.to_ascii_uppercase());
        writer.close();
        writer.wait_closed().await?;
        let out = wait_child(child).await?;
        assert!(out.status.success(), "python server: {}", out.status);
        Ok(())
    });
}

#[test]
fn curl_fetches_from_a_tulipa_protocol_speaking_http() {
    if !have("curl") {
        return;
    }
    run(async {
        let requests: Rc<RefCell<Vec<u8>>> = Rc::default();
        let r2 = requests.clone();
        let log = Log::new();
        let l2 = log.clone();
        let server = create_server(
            move || {
                let r3 = r2.clone();
                Rec::new(&l2).on_data(move |t, d| {
                    r3.borrow_mut().extend_from_slice(d);
                    if r3.borrow().windows(4).any(|w| w == b"\r\n\r\n") {
                        let body = b"hello, curl!\n";
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        t.writelines(&[head.as_bytes(), body]).unwrap();
                        t.close();
                    }
                })
            },
            "127.0.0.1",
            0,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let child = Command::new("curl")
            .args(["-sS", "--max-time", "30"])
            .arg(format!("http://127.0.0.1:{port}/hello"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let out = wait_child(child).await?;
        assert!(
            out.status.success(),
            "curl failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"hello, curl!\n");
        let request = String::from_utf8_lossy(&requests.borrow()).into_owned();
        assert!(request.starts_with("GET /hello HTTP/1.1\r\n"), "{request}");
        log.wait_lost().await?;
        assert!(log.error().is_none());
        server.close();
        Ok(())
    });
}
