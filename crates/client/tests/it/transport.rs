//! A fake in-memory transport: canned answers per path, and a log of what the client sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_client::{Client, Error, ResponseBody, Transport, TransportError};
use bytes::Bytes;
use expect_test::{Expect, expect};
use futures_util::future::BoxFuture;
use http::StatusCode;

const JOB_JSON: &str = r#"{
    "id": 7, "name": "build", "labels": ["linux"], "state": "queued", "conclusion": null,
    "reason": null, "max_attempts": 3, "cancel_requested": false,
    "created_at": "2025-01-01T00:00:00Z", "completed_at": null, "attempts": [],
    "spec": {"name": "build", "labels": ["linux"], "steps": [{"run": "make"}]}
}"#;

const STALE_LEASE_JSON: &str =
    r#"{"code": "stale_lease", "message": "attempt 1 of job 8 was re-leased", "hint": "stop the worker"}"#;

/// Answers by path: `/api/v1/jobs/7` with a job, `/api/v1/jobs/8` with a 409 error body, the
/// event stream with two chunks that split an event, and anything else with no answer at all.
#[derive(Debug, Default)]
struct FakeTransport {
    sent: Mutex<Vec<String>>,
}

impl FakeTransport {
    fn check_sent(&self, expect: Expect) {
        let sent = self.sent.lock().expect("no test thread panicked holding the log");
        expect.assert_eq(&sent.join("\n"));
    }
}

impl Transport for FakeTransport {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<http::Response<ResponseBody>, TransportError>> {
        let headers: Vec<String> = request
            .headers()
            .iter()
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("<not text>")))
            .collect();
        self.sent.lock().expect("no test thread panicked holding the log").push(format!(
            "{} {} [{}] timeout={timeout:?} body={}",
            request.method(),
            request.uri(),
            headers.join(", "),
            String::from_utf8_lossy(request.body()),
        ));
        let answer = |status: StatusCode, body: ResponseBody| {
            let mut response = http::Response::new(body);
            *response.status_mut() = status;
            Ok(response)
        };
        let result = match request.uri().path() {
            "/api/v1/jobs/7" => answer(StatusCode::OK, ResponseBody::from(JOB_JSON)),
            "/api/v1/jobs/8" => answer(StatusCode::CONFLICT, ResponseBody::from(STALE_LEASE_JSON)),
            "/api/v1/events" => {
                let chunks = [
                    Ok(Bytes::from_static(b": keep-alive\n\nid: 1\ndata: {\"seq\": 1, \"at\": \"t\", ")),
                    Ok(Bytes::from_static(b"\"kind\": \"job.queued\", \"job_id\": 7, \"data\": {}}\n\n")),
                ];
                answer(StatusCode::OK, ResponseBody::from_stream(futures_util::stream::iter(chunks)))
            }
            _ => Err(TransportError::timed_out("no answer within the timeout")),
        };
        Box::pin(std::future::ready(result))
    }
}

fn client(transport: &Arc<FakeTransport>) -> Client {
    Client::with_transport("http://ci.test/", Some("bat_admin".into()), Arc::clone(transport) as Arc<dyn Transport>)
        .expect("a valid base URL")
}

#[tokio::test]
async fn a_success_answer_decodes() {
    let transport = Arc::new(FakeTransport::default());
    let job = client(&transport).get_job(7).await.expect("the canned job");
    assert_eq!((job.id, job.name.as_str(), job.state.as_str()), (7, "build", "queued"));
    transport.check_sent(expect![[
        r#"GET http://ci.test/api/v1/jobs/7 [authorization: Bearer bat_admin] timeout=Some(30s) body="#
    ]]);
}

#[tokio::test]
async fn an_error_answer_is_an_api_error_with_the_body_code() {
    let transport = Arc::new(FakeTransport::default());
    let error = client(&transport).get_job(8).await.expect_err("a 409");
    let Error::Api { status, body, .. } = &error else { panic!("an API error, got {error:?}") };
    assert_eq!(*status, StatusCode::CONFLICT);
    assert_eq!(body.hint.as_deref(), Some("stop the worker"));
    assert_eq!(error.code(), Some("stale_lease"));
    assert!(error.is_stale_lease());
    assert!(!error.is_retryable());
    expect![[
        r#"GET http://ci.test/api/v1/jobs/8: 409 Conflict: attempt 1 of job 8 was re-leased (hint: stop the worker)"#
    ]]
    .assert_eq(&error.to_string());
}

#[tokio::test]
async fn a_transport_failure_is_retryable() {
    let transport = Arc::new(FakeTransport::default());
    let error = client(&transport).get_job(9).await.expect_err("no answer");
    let Error::Transport { source, .. } = &error else { panic!("a transport error, got {error:?}") };
    assert!(source.is_timeout());
    assert!(error.is_retryable());
    expect![[r#"GET http://ci.test/api/v1/jobs/9: no answer within the timeout"#]].assert_eq(&error.to_string());
}

#[tokio::test]
async fn requests_carry_bodies_tokens_timeouts_and_encoded_urls() {
    let transport = Arc::new(FakeTransport::default());
    let runner = client(&transport).with_token("bat_runner");
    let _ = runner.poll(3, Duration::from_secs(20), 2, 5).await;
    let fence = baton_api::FencedRequest { epoch: 2, token: "job_token".into() };
    let _ = runner.renew(4, 1, &fence).await;
    let _ = runner.post_raw("/api/v1/jobs", b"{\"name\": \"x\"}".to_vec()).await;
    let _ = runner.cancel_job(4).await;
    // Parsed as reqwest parses it: the space is percent-encoded, not refused.
    let _ = runner.pool_snapshot("linux x").await;
    transport.check_sent(expect![[r#"
        GET http://ci.test/api/v1/sessions/3/messages?wait=20&free_slots=2&ack=5 [authorization: Bearer bat_runner] timeout=Some(50s) body=
        POST http://ci.test/api/v1/jobs/4/attempts/1/renew [authorization: Bearer bat_runner, content-type: application/json] timeout=Some(30s) body={"epoch":2,"token":"job_token"}
        POST http://ci.test/api/v1/jobs [content-type: application/json, authorization: Bearer bat_runner] timeout=Some(30s) body={"name": "x"}
        POST http://ci.test/api/v1/jobs/4/cancel [authorization: Bearer bat_runner] timeout=Some(30s) body=
        GET http://ci.test/api/v1/scaler/snapshot?pool=linux%20x [authorization: Bearer bat_runner] timeout=Some(30s) body="#]]);
}

#[tokio::test]
async fn the_event_stream_reads_chunks_through_the_transport() {
    let transport = Arc::new(FakeTransport::default());
    let mut events = client(&transport).events(0).await.expect("an open stream");
    let event = events.next().await.expect("one event").expect("a valid event");
    assert_eq!((event.seq, event.kind.as_str(), event.job_id), (1, "job.queued", Some(7)));
    assert!(events.next().await.is_none(), "the stream ended with its body");
    transport.check_sent(expect![[
        r#"GET http://ci.test/api/v1/events?after=0 [accept: text/event-stream, authorization: Bearer bat_admin] timeout=None body="#
    ]]);
}
