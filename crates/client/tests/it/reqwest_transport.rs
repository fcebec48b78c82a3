//! The default transport on a real socket: what reqwest puts on the wire, and how answers and
//! failures come back.

use std::sync::{Arc, Mutex};

use baton_client::{Client, Error};
use expect_test::expect;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers each connection with the next canned response, then closes it, and
/// keeps every request it read with the port replaced by `PORT`.
pub(crate) async fn serve(answers: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let port = listener.local_addr().expect("a bound address").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    tokio::spawn(async move {
        for answer in answers {
            let (mut socket, _) = listener.accept().await.expect("a connection");
            let request = read_request(&mut socket).await;
            log.lock().expect("no panic while logging").push(request.replace(&port.to_string(), "PORT"));
            socket.write_all(answer.as_bytes()).await.expect("write the answer");
            socket.shutdown().await.expect("close the connection");
        }
    });
    (format!("http://127.0.0.1:{port}"), requests)
}

/// One request: its head, then as many body bytes as `content-length` says.
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = socket.read(&mut buffer).await.expect("read the request");
        bytes.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&bytes).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let content_length = text[..head_end]
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .map_or(0, |length| length.parse::<usize>().expect("a numeric content-length"));
            if bytes.len() >= head_end + 4 + content_length || read == 0 {
                return text;
            }
        } else if read == 0 {
            return text;
        }
    }
}

pub(crate) const JOB_JSON: &str = r#"{"id": 7, "name": "build", "labels": [], "state": "queued", "conclusion": null,
    "reason": null, "max_attempts": 3, "cancel_requested": false, "created_at": "2025-01-01T00:00:00Z",
    "completed_at": null, "attempts": [], "spec": {"name": "build", "steps": [{"run": "make"}]}}"#;

/// An HTTP/1.1 answer with a JSON body, after which the server closes the connection.
pub(crate) fn answer(status: &str, json: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
        json.len()
    )
}

#[tokio::test]
async fn requests_and_answers_on_the_wire() {
    let (url, requests) = serve(vec![
        answer("200 OK", JOB_JSON),
        answer("409 Conflict", r#"{"code": "stale_lease", "message": "re-leased"}"#),
        answer("200 OK", JOB_JSON),
    ])
    .await;
    let client = Client::new(&url, Some("bat_admin".into())).expect("a valid base URL");
    let job = client.get_job(7).await.expect("the canned job");
    assert_eq!(job.id, 7);
    let error = client.cancel_job(8).await.expect_err("a 409");
    assert_eq!(error.code(), Some("stale_lease"));
    let answer = client.post_raw("/api/v1/jobs", b"{\"name\":\"x\"}".to_vec()).await.expect("a JSON answer");
    assert_eq!(answer["id"], 7);
    let requests = requests.lock().expect("no panic while logging").join("----\n");
    expect![[r#"
        GET /api/v1/jobs/7 HTTP/1.1
        authorization: Bearer bat_admin
        accept: */*
        host: 127.0.0.1:PORT

        ----
        POST /api/v1/jobs/8/cancel HTTP/1.1
        authorization: Bearer bat_admin
        accept: */*
        host: 127.0.0.1:PORT

        ----
        POST /api/v1/jobs HTTP/1.1
        content-type: application/json
        authorization: Bearer bat_admin
        accept: */*
        host: 127.0.0.1:PORT
        content-length: 12

        {"name":"x"}"#]]
    .assert_eq(&requests.replace("\r\n", "\n"));
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let port = listener.local_addr().expect("a bound address").port();
    drop(listener);
    let client = Client::new(&format!("http://127.0.0.1:{port}"), None).expect("a valid base URL");
    let error = client.health().await.expect_err("nothing listens");
    assert!(matches!(error, Error::Transport { .. }), "a transport error, got {error:?}");
    assert!(error.is_retryable());
}
