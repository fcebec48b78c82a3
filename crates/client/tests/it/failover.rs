//! Failing over between several server URLs: which answers move the client to the next server,
//! that it moves once however many requests fail together, and that it never sends a request
//! twice. A fake transport plays the servers here; `failover_sockets.rs` does it on real ones.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_client::{Client, ResponseBody, Transport, TransportError};
use bytes::Bytes;
use expect_test::{Expect, expect};
use futures_util::future::BoxFuture;
use http::StatusCode;

const JOB_JSON: &str = r#"{
    "id": 7, "name": "build", "labels": [], "state": "queued", "conclusion": null,
    "reason": null, "max_attempts": 3, "cancel_requested": false,
    "created_at": "2025-01-01T00:00:00Z", "completed_at": null, "attempts": [],
    "spec": {"name": "build", "steps": [{"run": "make"}]}
}"#;

/// How one fake server answers every request.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// A job for `/api/v1/jobs/7`, health for `/healthz`, and an event stream that breaks
    /// after one event.
    Healthy,
    /// No answer: the connection is refused.
    Refused,
    /// This status, with an error body.
    Status(u16),
}

/// Servers by host (`a.test`, `b.test`, ...), and a log of every request sent to any of them.
#[derive(Debug)]
struct FakeServers {
    behaviours: BTreeMap<String, Behaviour>,
    sent: Mutex<Vec<String>>,
    /// When set, a refused request waits here first, so requests can be made to fail together.
    gate: Option<Arc<tokio::sync::Barrier>>,
}

impl FakeServers {
    /// From `"a=healthy b=refused c=503"`.
    fn new(servers: &str) -> FakeServers {
        let behaviours = servers
            .split_whitespace()
            .map(|server| {
                let (host, behaviour) = server.split_once('=').expect("host=behaviour");
                let behaviour = match behaviour {
                    "healthy" => Behaviour::Healthy,
                    "refused" => Behaviour::Refused,
                    status => Behaviour::Status(status.parse().expect("a status code")),
                };
                (format!("{host}.test"), behaviour)
            })
            .collect();
        FakeServers { behaviours, sent: Mutex::default(), gate: None }
    }

    /// The comma-separated URL list of every server, in host order.
    fn urls(&self) -> String {
        self.behaviours.keys().map(|host| format!("http://{host}")).collect::<Vec<_>>().join(",")
    }

    fn client(self: &Arc<FakeServers>) -> Client {
        Client::with_transport(&self.urls(), Some("bat_admin".into()), Arc::clone(self) as Arc<dyn Transport>)
            .expect("valid base URLs")
    }

    fn take_sent(&self) -> Vec<String> {
        std::mem::take(&mut *self.sent.lock().expect("no test thread panicked holding the log"))
    }
}

impl Transport for FakeServers {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        _timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<http::Response<ResponseBody>, TransportError>> {
        let uri = request.uri().clone();
        self.sent.lock().expect("no test thread panicked holding the log").push(format!("{} {uri}", request.method()));
        let behaviour = uri.host().and_then(|host| self.behaviours.get(host)).copied().unwrap_or(Behaviour::Refused);
        let gate = self.gate.clone();
        let answer = |status: StatusCode, body: ResponseBody| {
            let mut response = http::Response::new(body);
            *response.status_mut() = status;
            response
        };
        Box::pin(async move {
            match behaviour {
                Behaviour::Refused => {
                    if let Some(gate) = gate {
                        gate.wait().await;
                    }
                    Err(TransportError::new("connection refused"))
                }
                Behaviour::Status(status) => Ok(answer(
                    StatusCode::from_u16(status).expect("a valid status"),
                    ResponseBody::from(format!(r#"{{"code": "http_{status}", "message": "answered {status}"}}"#)),
                )),
                Behaviour::Healthy => Ok(match uri.path() {
                    "/api/v1/jobs/7" => answer(StatusCode::OK, ResponseBody::from(JOB_JSON)),
                    "/healthz" => answer(StatusCode::OK, ResponseBody::from(r#"{"status": "ok", "version": "0"}"#)),
                    "/api/v1/events" => {
                        let chunks = [
                            Ok(Bytes::from_static(
                                b"data: {\"seq\": 1, \"at\": \"t\", \"kind\": \"job.queued\", \"data\": {}}\n\n",
                            )),
                            Err(TransportError::new("connection reset")),
                        ];
                        answer(StatusCode::OK, ResponseBody::from_stream(futures_util::stream::iter(chunks)))
                    }
                    _ => answer(StatusCode::NOT_FOUND, ResponseBody::from(r#"{"code": "not_found", "message": "no"}"#)),
                }),
            }
        })
    }
}

/// Makes `n_calls` calls of `GET /api/v1/jobs/7` to `servers`, and prints each outcome, the
/// server current after it, and every request sent.
async fn check(servers: &str, n_calls: usize, expect: Expect) {
    let servers = Arc::new(FakeServers::new(servers));
    let client = servers.client();
    let mut lines = Vec::new();
    for _ in 0..n_calls {
        let outcome = match client.get_job(7).await {
            Ok(job) => format!("job {}", job.id),
            Err(error) => format!("error (retryable: {}): {error}", error.is_retryable()),
        };
        lines.push(format!("{outcome}; now {}", client.base_url()));
    }
    lines.push("sent:".into());
    lines.extend(servers.take_sent());
    expect.assert_eq(&lines.join("\n"));
}

#[tokio::test]
async fn a_refused_connection_moves_on_to_the_next_server() {
    check(
        "a=refused b=healthy",
        3,
        expect![[r#"
            error (retryable: true): GET http://a.test/api/v1/jobs/7: connection refused; now http://b.test
            job 7; now http://b.test
            job 7; now http://b.test
            sent:
            GET http://a.test/api/v1/jobs/7
            GET http://b.test/api/v1/jobs/7
            GET http://b.test/api/v1/jobs/7"#]],
    )
    .await;
}

#[tokio::test]
async fn bad_gateway_unavailable_and_gateway_timeout_move_on() {
    check(
        "a=502 b=503 c=504 d=healthy",
        4,
        expect![[r#"
            error (retryable: true): GET http://a.test/api/v1/jobs/7: 502 Bad Gateway: answered 502; now http://b.test
            error (retryable: true): GET http://b.test/api/v1/jobs/7: 503 Service Unavailable: answered 503; now http://c.test
            error (retryable: true): GET http://c.test/api/v1/jobs/7: 504 Gateway Timeout: answered 504; now http://d.test
            job 7; now http://d.test
            sent:
            GET http://a.test/api/v1/jobs/7
            GET http://b.test/api/v1/jobs/7
            GET http://c.test/api/v1/jobs/7
            GET http://d.test/api/v1/jobs/7"#]],
    )
    .await;
}

#[tokio::test]
async fn an_answer_about_the_request_stays_on_the_server() {
    // A 4xx is about the request, and a 500 about this call on a server whose database every
    // replica shares: another server would answer the same.
    check(
        "a=409 b=healthy",
        2,
        expect![[r#"
            error (retryable: false): GET http://a.test/api/v1/jobs/7: 409 Conflict: answered 409; now http://a.test
            error (retryable: false): GET http://a.test/api/v1/jobs/7: 409 Conflict: answered 409; now http://a.test
            sent:
            GET http://a.test/api/v1/jobs/7
            GET http://a.test/api/v1/jobs/7"#]],
    )
    .await;
    check(
        "a=500 b=healthy",
        1,
        expect![[r#"
            error (retryable: true): GET http://a.test/api/v1/jobs/7: 500 Internal Server Error: answered 500; now http://a.test
            sent:
            GET http://a.test/api/v1/jobs/7"#]],
    )
    .await;
}

#[tokio::test]
async fn the_last_server_moves_on_to_the_first() {
    check(
        "a=refused b=refused",
        3,
        expect![[r#"
            error (retryable: true): GET http://a.test/api/v1/jobs/7: connection refused; now http://b.test
            error (retryable: true): GET http://b.test/api/v1/jobs/7: connection refused; now http://a.test
            error (retryable: true): GET http://a.test/api/v1/jobs/7: connection refused; now http://b.test
            sent:
            GET http://a.test/api/v1/jobs/7
            GET http://b.test/api/v1/jobs/7
            GET http://a.test/api/v1/jobs/7"#]],
    )
    .await;
}

#[tokio::test]
async fn one_server_stays_current_whatever_fails() {
    check(
        "a=refused",
        2,
        expect![[r#"
            error (retryable: true): GET http://a.test/api/v1/jobs/7: connection refused; now http://a.test
            error (retryable: true): GET http://a.test/api/v1/jobs/7: connection refused; now http://a.test
            sent:
            GET http://a.test/api/v1/jobs/7
            GET http://a.test/api/v1/jobs/7"#]],
    )
    .await;
}

#[tokio::test]
async fn requests_failing_together_move_on_once() {
    // Three servers, so moving on twice (to c) would show; both requests read the current
    // server before either fails, because the gate holds each failure until both are sent.
    let mut servers = FakeServers::new("a=refused b=healthy c=healthy");
    servers.gate = Some(Arc::new(tokio::sync::Barrier::new(2)));
    let servers = Arc::new(servers);
    let client = servers.client();
    let other = client.clone();
    let (first, second) = tokio::join!(client.get_job(7), other.get_job(7));
    assert!(first.is_err() && second.is_err());
    assert_eq!(client.base_url(), "http://b.test");
    assert_eq!(servers.take_sent(), ["GET http://a.test/api/v1/jobs/7", "GET http://a.test/api/v1/jobs/7"]);
}

#[tokio::test]
async fn clones_and_clients_with_other_tokens_or_connections_share_the_current_server() {
    let servers = Arc::new(FakeServers::new("a=refused b=healthy"));
    let client = servers.client();
    let runner = client.with_token("bat_runner");
    let renewer = runner.with_own_connections().expect("a connection pool");
    let _ = runner.get_job(7).await.expect_err("a refuses");
    assert_eq!(client.base_url(), "http://b.test");
    assert_eq!(renewer.base_url(), "http://b.test");
    assert_eq!(client.clone().base_url(), "http://b.test");
    assert_eq!(renewer.server_urls(), ["http://a.test", "http://b.test"]);
}

#[tokio::test]
async fn the_event_stream_opens_on_the_current_server_and_a_break_moves_on() {
    let servers = Arc::new(FakeServers::new("a=refused b=healthy c=healthy"));
    let client = servers.client();
    let _ = client.events(0).await.expect_err("a refuses");
    let mut events = client.events(0).await.expect("b streams");
    let event = events.next().await.expect("one event").expect("a valid event");
    assert_eq!(event.seq, 1);
    let error = events.next().await.expect("the break").expect_err("a reset");
    assert!(error.is_retryable());
    assert_eq!(client.base_url(), "http://c.test");
    assert_eq!(
        servers.take_sent(),
        ["GET http://a.test/api/v1/events?after=0", "GET http://b.test/api/v1/events?after=0"]
    );
}

#[tokio::test]
async fn finding_a_live_server_asks_each_at_most_once() {
    let servers = Arc::new(FakeServers::new("a=refused b=503 c=healthy"));
    let client = servers.client();
    client.find_live_server().await.expect("c answers");
    assert_eq!(client.base_url(), "http://c.test");
    assert_eq!(
        servers.take_sent(),
        ["GET http://a.test/healthz", "GET http://b.test/healthz", "GET http://c.test/healthz"]
    );

    let servers = Arc::new(FakeServers::new("a=refused b=refused"));
    let client = servers.client();
    let error = client.find_live_server().await.expect_err("nothing answers");
    assert_eq!(error.to_string(), "GET http://b.test/healthz: connection refused");
    assert_eq!(servers.take_sent(), ["GET http://a.test/healthz", "GET http://b.test/healthz"]);

    // An answer about the request, not the server, ends the search.
    let servers = Arc::new(FakeServers::new("a=500 b=healthy"));
    let client = servers.client();
    let error = client.find_live_server().await.expect_err("a answers 500");
    assert_eq!(error.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(servers.take_sent(), ["GET http://a.test/healthz"]);
}
