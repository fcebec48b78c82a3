//! The test harness: a real server on 127.0.0.1 with a SQLite store in a temp dir, and
//! runners that speak the protocol through `baton-client`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_api as api;
use baton_client::Client;
use baton_core::Timeouts;
use baton_server::{Config, Database, Server};
use baton_store::sqlite::Durability;

pub const ADMIN_TOKEN: &str = "bat_admin_integration-tests-only";

/// Generous bound on anything a test waits for; the happy path takes milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub server: Option<Server>,
    pub admin: Client,
    pub url: String,
    _dir: tempfile::TempDir,
}

/// Timeouts short enough that expiry tests finish quickly, long enough for a loaded 2-core CI
/// machine not to expire healthy leases.
pub fn fast_timeouts() -> Timeouts {
    Timeouts {
        lease_ttl: Duration::from_millis(1500),
        accept_timeout: Duration::from_millis(400),
        session_ttl: Duration::from_millis(2500),
        long_poll_max: Duration::from_secs(2),
    }
}

impl TestServer {
    pub async fn start(timeouts: Timeouts) -> TestServer {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let database = Database::Sqlite { path: dir.path().join("baton.db"), durability: Durability::Normal };
        TestServer::start_on(database, timeouts, Duration::from_millis(25), dir).await
    }

    /// A server on `database` that sweeps every `sweep_interval`, keeping `dir` for as long as
    /// it runs.
    pub async fn start_on(
        database: Database,
        timeouts: Timeouts,
        sweep_interval: Duration,
        dir: tempfile::TempDir,
    ) -> TestServer {
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("loopback address"),
            database,
            timeouts,
            sweep_interval,
            admin_token: Some(ADMIN_TOKEN.to_string()),
            webhooks: baton_server::webhooks::WebhookSettings {
                allow: vec!["127.0.0.1".parse().expect("address")],
                retry_initial: Duration::from_millis(100),
                retry_max: Duration::from_secs(1),
                ..Default::default()
            },
            execution: Default::default(),
            clock_origin: None,
        };
        let server = Server::start(config).await.expect("start the server");
        let url = server.url();
        let admin = Client::new(&url, Some(ADMIN_TOKEN.to_string())).expect("client");
        TestServer { server: Some(server), admin, url, _dir: dir }
    }

    pub fn anonymous(&self) -> Client {
        Client::new(&self.url, None).expect("client")
    }

    pub async fn registration_token(&self, labels: &[&str]) -> String {
        self.admin
            .create_registration_token(&api::CreateRegistrationTokenRequest {
                labels: labels.iter().map(|label| label.to_string()).collect(),
                ..Default::default()
            })
            .await
            .expect("create a registration token")
            .token
    }

    /// Registers a runner and opens its session.
    pub async fn runner(&self, name: &str, labels: &[&str], capacity: u32, ephemeral: bool) -> TestRunner {
        let token = self.registration_token(&[]).await;
        let request = api::RegisterRequest {
            token,
            name: name.to_string(),
            labels: labels.iter().map(|label| label.to_string()).collect(),
            capacity,
            ephemeral,
        };
        TestRunner::register(&self.anonymous(), &request).await
    }

    /// Enqueues a one-step job.
    pub async fn enqueue(&self, name: &str, labels: &[&str]) -> api::Job {
        self.admin.enqueue_job(&job_spec(name, labels)).await.expect("enqueue a job")
    }

    /// Every event so far, read from the SSE stream up to the newest sequence.
    pub async fn all_events(&self) -> Vec<api::Event> {
        all_events(&self.admin).await
    }

    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("shut the server down");
        }
    }
}

/// Every event so far, read from the SSE stream of `admin`'s server up to the newest sequence.
pub async fn all_events(admin: &Client) -> Vec<api::Event> {
    let newest = newest_event_seq(admin).await;
    let mut stream = admin.events(0).await.expect("open the event stream");
    let mut events = Vec::new();
    while events.last().is_none_or(|event: &api::Event| event.seq < newest) {
        let next = tokio::time::timeout(PATIENCE, stream.next()).await.expect("events arrive in time");
        events.push(next.expect("the stream stays open").expect("a readable event"));
    }
    events
}

/// The newest event sequence, as the snapshot of any runner read reports it; 0 with no runner.
async fn newest_event_seq(admin: &Client) -> i64 {
    let runners = admin.list_runners(0, 1).await.expect("list runners");
    match runners.runners.first() {
        Some(runner) => admin.get_runner(runner.id).await.expect("get a runner").as_of_event,
        None => 0,
    }
}

pub fn job_spec(name: &str, labels: &[&str]) -> api::JobSpec {
    api::JobSpec {
        name: name.to_string(),
        labels: labels.iter().map(|label| label.to_string()).collect(),
        env: BTreeMap::new(),
        steps: vec![api::StepSpec {
            id: None,
            name: None,
            run: "echo hi".into(),
            shell: None,
            env: BTreeMap::new(),
            working_directory: None,
            continue_on_error: false,
            timeout_minutes: None,
            condition: None,
        }],
        timeout_minutes: None,
        max_attempts: None,
        contexts: None,
        outputs: None,
    }
}

pub struct TestRunner {
    pub client: Client,
    pub id: i64,
    pub session_id: i64,
    /// The newest message id processed.
    pub ack: i64,
    pub credential: String,
}

impl TestRunner {
    /// Registers through `anonymous` (a client without a token) and opens the runner's session.
    pub async fn register(anonymous: &Client, request: &api::RegisterRequest) -> TestRunner {
        let registered = anonymous.register(request).await.expect("register a runner");
        let client = anonymous.with_token(registered.credential.clone());
        let session = client.open_session().await.expect("open a session");
        TestRunner {
            client,
            id: registered.runner.id,
            session_id: session.session_id,
            ack: 0,
            credential: registered.credential,
        }
    }

    /// The same runner and session, its calls sent through `anonymous`'s server.
    pub fn through(&self, anonymous: &Client) -> TestRunner {
        TestRunner {
            client: anonymous.with_token(self.credential.clone()),
            id: self.id,
            session_id: self.session_id,
            ack: self.ack,
            credential: self.credential.clone(),
        }
    }

    /// One poll with `free_slots`; acknowledges what it returns on the next poll.
    pub async fn poll(&mut self, wait: Duration, free_slots: u32) -> Vec<api::RunnerMessage> {
        let response = self.client.poll(self.session_id, wait, free_slots, self.ack).await.expect("poll");
        if let Some(last) = response.messages.last() {
            self.ack = last.id;
        }
        response.messages
    }

    /// Polls until a job offer arrives or the patience runs out.
    pub async fn next_offer(&mut self) -> api::JobOffer {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            for message in self.poll(Duration::from_secs(1), 1).await {
                if let api::MessageBody::JobOffer(offer) = message.body {
                    return offer;
                }
            }
        }
        panic!("runner {} got no offer within {PATIENCE:?}", self.id);
    }

    pub fn fence(offer: &api::JobOffer) -> api::FencedRequest {
        api::FencedRequest { epoch: offer.epoch, token: offer.token.clone() }
    }

    pub async fn accept(&self, offer: &api::JobOffer) -> Result<api::LeaseResponse, baton_client::Error> {
        self.client.accept(offer.job_id, offer.attempt, &Self::fence(offer)).await
    }

    pub async fn complete(
        &self,
        offer: &api::JobOffer,
        result: api::AttemptResult,
    ) -> Result<api::Job, baton_client::Error> {
        self.client
            .complete(
                offer.job_id,
                offer.attempt,
                &api::CompleteRequest {
                    epoch: offer.epoch,
                    token: offer.token.clone(),
                    result,
                    outputs: BTreeMap::new(),
                    summary: None,
                },
            )
            .await
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn count_kind(events: &[api::Event], kind: &str) -> usize {
    events.iter().filter(|event| event.kind == kind).count()
}
