//! The HTTP envelope: clients that send slowly or not at all are closed after the configured
//! timeouts, at most the configured number of connections is open, and a new client is still
//! answered while slow ones fill the cap, while long polls, which wait for an answer, outlive
//! every timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::TestGateway;
use handsign::clock::TestClock;
use handsign::config::ConnectionLimits;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Longer than any test here may take: a timeout set to this never fires.
const NEVER: u64 = 3600;
/// How long a test waits for the gateway to close a connection before it calls that a failure.
const GIVE_UP: Duration = Duration::from_secs(20);

fn limits(header: u64, body: u64, idle: u64) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: header,
        body_read_timeout: body,
        idle_timeout: idle,
        ..ConnectionLimits::DEFAULT
    }
}

async fn connect(gateway: &TestGateway) -> TcpStream {
    let address = gateway.url.trim_start_matches("http://localhost:");
    TcpStream::connect(format!("127.0.0.1:{address}"))
        .await
        .unwrap()
}

/// Reads until the gateway closes the connection (end of stream, or a reset when it closed
/// with bytes unread); returns what was read. Fails if it stays open for [`GIVE_UP`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut read = Vec::new();
    let closed = tokio::time::timeout(GIVE_UP, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the gateway kept the connection open for {GIVE_UP:?}; read {:?}",
        String::from_utf8_lossy(&read)
    );
    read
}

/// The request line and some headers of a request, without the blank line that ends them.
const HALF_A_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n";

#[tokio::test]
async fn a_client_that_does_not_finish_its_headers_is_closed() {
    let gateway = TestGateway::start_with(|args| args.connections = limits(1, NEVER, NEVER)).await;
    let mut slow = connect(&gateway).await;
    let started = Instant::now();
    slow.write_all(HALF_A_HEAD).await.unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() >= Duration::from_secs(1));
    // The gateway still answers.
    let response = reqwest::get(format!("{}/healthz", gateway.url))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_closed() {
    let gateway = TestGateway::start_with(|args| args.connections = limits(NEVER, 1, NEVER)).await;
    let mut slow = connect(&gateway).await;
    let started = Instant::now();
    slow.write_all(
        b"POST /webauthn/login/options HTTP/1.1\r\nHost: localhost\r\n\
          Origin: http://localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"user\": ",
    )
    .await
    .unwrap();
    read_until_closed(&mut slow).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let gateway = TestGateway::start_with(|args| args.connections = limits(NEVER, NEVER, 1)).await;
    let mut client = connect(&gateway).await;
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let read = read_until_closed(&mut client).await;
    let read = String::from_utf8_lossy(&read);
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    assert!(read.ends_with("ok\n"), "{read}");
    assert!(answered.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_long_poll_outlives_every_timeout() {
    // The request expires when the test moves the gateway's clock; the connection timeouts
    // run in real time meanwhile.
    let time = TestClock::starting_now();
    let gateway =
        TestGateway::start_reading(time.clock(), |args| args.connections = limits(1, 1, 1)).await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let (status, created) = agent
        .call(
            reqwest::Method::POST,
            "/v1/approvals",
            Some(&json!({
                "action": "flights.book",
                "params": common::flight(),
                "audience": "https://travel.example",
                "ttl": handsign::config::MIN_TTL,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    // Nobody decides: the poll waits until the request expires.
    let poll = tokio::spawn({
        let (agent, id) = (agent.clone(), id.to_owned());
        async move { agent.read(&id, 60).await }
    });
    common::until("the long poll is parked", || {
        gateway.state.events.waiters() > 0
    })
    .await;
    // Meanwhile the timeouts close a client that stops sending its headers and one that stays
    // idle after its answer, each opened after the poll.
    let mut slow = connect(&gateway).await;
    slow.write_all(HALF_A_HEAD).await.unwrap();
    read_until_closed(&mut slow).await;
    let mut idle = connect(&gateway).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut idle).await;
    assert!(!poll.is_finished(), "{:?}", poll.await);
    time.advance(Duration::from_secs(
        handsign::config::MIN_TTL.unsigned_abs(),
    ));
    let (status, answer) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "expired", "{answer}");
}

#[tokio::test]
async fn at_the_cap_slow_clients_make_room_and_healthz_answers() {
    const CAP: usize = 4;
    const SLOW: usize = CAP + 2;
    let gateway = TestGateway::start_with(|args| {
        args.connections = ConnectionLimits {
            max_connections: Some(CAP as u64),
            ..limits(NEVER, NEVER, NEVER)
        }
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut client = connect(&gateway).await;
        client.write_all(HALF_A_HEAD).await.unwrap();
        slow.push(client);
    }
    // A fresh client is answered at once, although the cap's worth of slow clients is open.
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", gateway.url))
        .timeout(GIVE_UP)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The oldest slow clients made room: two for the two slow clients over the cap, one for the
    // health check.
    let (shed, kept) = slow.split_at_mut(SLOW - CAP + 1);
    for client in shed {
        assert!(read_until_closed(client).await.is_empty());
    }
    // The others are still open: they finish their requests and are answered.
    for client in kept {
        client.write_all(b"\r\n").await.unwrap();
        let mut answer = [0u8; 12];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
    }
}

/// Opens `agent`'s event stream of request `id` and reads it until the request is pending: the
/// gateway is then answering on that connection.
async fn pending_stream(agent: &common::TestAgent, url: &str, id: &str) -> reqwest::Response {
    let path = format!("/v1/approvals/{id}/events");
    let mut stream = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .header("dpop", agent.proof(&reqwest::Method::GET, &path))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut text = String::new();
    while !text.contains("\"status\":\"pending\"") {
        let chunk = stream.chunk().await.unwrap().expect("the stream ended");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    stream
}

/// Reads the rest of an event stream; fails if the gateway cut it.
async fn rest_of(mut stream: reqwest::Response) -> String {
    let mut text = String::new();
    while let Some(chunk) = stream.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}

#[tokio::test]
async fn connections_being_answered_are_never_shed_and_new_clients_wait_for_room() {
    let gateway = TestGateway::start_with(|args| {
        args.connections = ConnectionLimits {
            max_connections: Some(2),
            ..limits(1, 1, 1)
        }
    })
    .await;
    let _alice = gateway.register("alice").await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        let agent = gateway.agent("alice").await;
        let created = agent.request(common::flight()).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let stream = pending_stream(&agent, &gateway.url, &id).await;
        streams.push((agent, id, stream));
    }
    // Both connections are answering: a new client is not let in by cutting one of them.
    let healthz = tokio::spawn(
        reqwest::Client::new()
            .get(format!("{}/healthz", gateway.url))
            .timeout(GIVE_UP)
            .send(),
    );
    let end = |agent: &common::TestAgent, id: &str| {
        let (store, events) = (gateway.store.clone(), gateway.state.events.clone());
        let (agent, id) = (
            agent.id().to_owned(),
            handsign::domain::ApprovalId::parse(id).unwrap(),
        );
        async move {
            let revoked = store
                .set_agent_status(
                    &agent,
                    handsign::domain::AgentStatus::Revoked,
                    handsign::clock::Clock::system().now(),
                )
                .await
                .unwrap();
            events.publish(&id, &revoked.user);
        }
    };
    // When the first stream's request ends, its answer is complete: the room it leaves lets the
    // waiting client in.
    let (agent, id, first) = streams.remove(0);
    end(&agent, &id).await;
    assert!(rest_of(first).await.contains("\"status\":\"cancelled\""));
    assert_eq!(healthz.await.unwrap().unwrap().status(), StatusCode::OK);
    // The second stream, open all along and longer than every timeout, still gets its end.
    let (agent, id, second) = streams.remove(0);
    end(&agent, &id).await;
    assert!(rest_of(second).await.contains("\"status\":\"cancelled\""));
}

#[tokio::test]
async fn with_few_open_files_slow_clients_cannot_stop_the_gateway_answering() {
    use std::io::BufRead as _;
    // The gateway process with 256 open files: by default it keeps at most 128 connections.
    let data = tempfile::tempdir().unwrap();
    let port = common::process::free_port();
    let mut child = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_handsign"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--public-url", &format!("http://localhost:{port}")])
        .arg("--data-dir")
        .arg(data.path())
        .env("HANDSIGN_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        if line.unwrap().contains("listening on") {
            break;
        }
    }
    // More half-sent requests than it has open files.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        client.write_all(HALF_A_HEAD).await.unwrap();
        slow.push(client);
    }
    let response = handsign::http_client::new()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(GIVE_UP)
        .send()
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(response.unwrap().status(), StatusCode::OK);
}
