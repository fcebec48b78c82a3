//! Failing over on real loopback sockets, through the default reqwest transport: a closed port
//! and a 503 move the client to the next server, a 4xx does not.

use baton_client::{Client, Error};
use tokio::net::TcpListener;

use crate::reqwest_transport::{JOB_JSON, answer, serve};

/// The URL of a loopback port nothing listens on.
async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let port = listener.local_addr().expect("a bound address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn a_closed_port_fails_retryably_and_the_next_call_reaches_the_next_server() {
    let closed = closed_port_url().await;
    let (live, requests) = serve(vec![answer("200 OK", JOB_JSON)]).await;
    let client = Client::new(&format!("{closed},{live}"), None).expect("valid base URLs");
    let error = client.get_job(7).await.expect_err("nothing listens on the first server");
    assert!(matches!(error, Error::Transport { .. }), "a transport error, got {error:?}");
    assert!(error.is_retryable());
    assert_eq!(client.base_url(), live);
    let job = client.get_job(7).await.expect("the second server answers");
    assert_eq!(job.id, 7);
    assert_eq!(requests.lock().expect("no panic while logging").len(), 1);
}

#[tokio::test]
async fn a_503_moves_on_to_the_next_server() {
    let (unavailable, first_requests) =
        serve(vec![answer("503 Service Unavailable", r#"{"code": "unavailable", "message": "shutting down"}"#)]).await;
    let (live, second_requests) = serve(vec![answer("200 OK", JOB_JSON)]).await;
    let client = Client::new(&format!("{unavailable},{live}"), None).expect("valid base URLs");
    let error = client.get_job(7).await.expect_err("a 503");
    assert_eq!(error.status().map(|status| status.as_u16()), Some(503));
    assert!(error.is_retryable());
    assert_eq!(client.base_url(), live);
    assert_eq!(client.get_job(7).await.expect("the second server answers").id, 7);
    assert_eq!(first_requests.lock().expect("no panic while logging").len(), 1);
    assert_eq!(second_requests.lock().expect("no panic while logging").len(), 1);
}

#[tokio::test]
async fn a_4xx_stays_on_the_server() {
    let not_found = answer("404 Not Found", r#"{"code": "not_found", "message": "no job 7"}"#);
    let (first, first_requests) = serve(vec![not_found.clone(), answer("200 OK", JOB_JSON)]).await;
    let second = closed_port_url().await;
    let client = Client::new(&format!("{first}, {second}/"), None).expect("valid base URLs");
    let error = client.get_job(7).await.expect_err("a 404");
    assert_eq!(error.status().map(|status| status.as_u16()), Some(404));
    assert_eq!(client.base_url(), first);
    assert_eq!(client.get_job(7).await.expect("the first server answers again").id, 7);
    assert_eq!(first_requests.lock().expect("no panic while logging").len(), 2);
}
