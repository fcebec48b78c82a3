//! A webhook whose state change committed survives a SIGKILL of the server before delivery:
//! the event is the outbox, and the restarted server delivers it.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_api as api;
use baton_client::Client;

use crate::common::{ADMIN_TOKEN, PATIENCE, spec};

struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_server(dir: &std::path::Path, port: u16) -> (ServerProcess, Client) {
    let child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--webhook-allow", "127.0.0.1"])
        .args(["--webhook-retry-max", "200ms"])
        .arg("--data-dir")
        .arg(dir)
        .env("BATON_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("BATON_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start baton server");
    let client = Client::new(&format!("http://127.0.0.1:{port}"), Some(ADMIN_TOKEN.into())).expect("client");
    let deadline = Instant::now() + PATIENCE;
    while client.health().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (ServerProcess(child), client)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_committed_before_a_sigkill_arrives_after_the_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server_port, receiver_port) = (free_port(), free_port());
    let (server, client) = start_server(dir.path(), server_port).await;
    let created = client
        .create_webhook(&api::CreateWebhookRequest {
            url: format!("http://127.0.0.1:{receiver_port}/hook"),
            events: vec!["workflow_job".into()],
            secret: None,
            ordered: false,
        })
        .await
        .expect("create the webhook");
    let mut job = spec("doomed", &["true"]);
    job.labels = vec!["nowhere".into()];
    let job = client.enqueue_job(&job).await.expect("enqueue");
    // The cancel is answered after its commit: job.completed is in the store now. The receiver
    // is down, so it cannot have been delivered yet.
    client.cancel_job(job.id).await.expect("cancel");
    let mut server = server;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(server.0.id()).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the server");
    let _ = server.0.wait();
    drop(server);

    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let received = received.clone();
            move |body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    if let Ok(value) = serde_json::from_slice(&body) {
                        received.lock().expect("lock").push(value);
                    }
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", receiver_port)).await.expect("bind the receiver");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let (_server, client) = start_server(dir.path(), server_port).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let completed = received.lock().expect("lock").iter().any(|body| {
            body["action"] == "completed"
                && body["workflow_job"]["id"] == job.id
                && body["workflow_job"]["conclusion"] == "cancelled"
        });
        if completed {
            break;
        }
        assert!(Instant::now() < deadline, "the completed webhook never arrived: {:?}", received.lock().expect("lock"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = client.webhook_deliveries(created.webhook.id, 0, 10).await.expect("deliveries");
    assert!(log.deliveries.iter().any(|delivery| delivery.status == "delivered"), "{log:?}");
}
