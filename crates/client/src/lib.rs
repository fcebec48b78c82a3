//! The typed HTTP client for Baton's API.
//!
//! **Invariant:** this is the only way the runner, the scaler, the CLI and the tests reach the
//! server. Retry policy lives here and nowhere else: [`Error::is_retryable`] decides from the
//! error's kind, never from message text, and [`Backoff`] spaces the retries.
//!
//! Every request goes through a [`Transport`]: reqwest by default, or the simulation's own
//! through [`Client::with_transport`].
//!
//! A client knows one server URL or several (replicas of one deployment, any of which serves any
//! call) and sends every request to the current one. When a request finds that server
//! unavailable (no answer at all, or a 502, 503 or 504) the client moves on to the next one and
//! still returns the error: the caller's retry loop, which already treats it as retryable, then
//! reaches the next server. The client itself never sends a request twice.

pub mod entropy;
pub mod transport;
pub mod webhook;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use baton_api as api;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use api::ErrorBody;
use transport::ReqwestTransport;
pub use transport::{ResponseBody, Transport, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error.
    #[error("{method} {url}: {status}: {}{}", body.message, body.hint.as_ref().map(|hint| format!(" (hint: {hint})")).unwrap_or_default())]
    Api { method: Method, url: String, status: StatusCode, body: ErrorBody },
    /// The request did not get an answer: connection refused or reset, timeout.
    #[error("{method} {url}: {source}")]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: TransportError,
    },
    /// The answer was not what the API promises.
    #[error("{method} {url}: unreadable answer: {message}")]
    Decode { method: Method, url: String, message: String },
    #[error("invalid server URL {url:?}: {message}")]
    InvalidUrl { url: String, message: String },
}

impl Error {
    /// True when the same request may succeed later: no answer at all, or a server that is
    /// overloaded or failing. A 4xx never is: the request itself must change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Api { status, .. } => status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS,
            Error::Decode { .. } | Error::InvalidUrl { .. } => false,
        }
    }

    /// The API's machine-readable error code, when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { body, .. } => Some(&body.code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The attempt's lease is no longer held: stop its worker and report nothing more for it.
    pub fn is_stale_lease(&self) -> bool {
        self.code() == Some("stale_lease")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { next: first, max }
    }

    /// The next delay: uniformly random up to the current ceiling, which doubles each time.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(self.max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand_below(nanos.max(1)))
    }
}

fn rand_below(bound: u64) -> u64 {
    entropy::below(bound)
}

/// Most server URLs one client fails over between.
pub const SERVER_URLS_MAX: usize = 16;

/// The servers a client may send to, and the one it sends to now. Every clone of a client, and
/// every client made from it with [`Client::with_token`] or [`Client::with_own_connections`],
/// shares one, so a server one of them found unavailable is left by all.
#[derive(Debug)]
struct Servers {
    /// Base URLs without trailing slashes, in the order given; never empty.
    urls: Vec<String>,
    /// The index in `urls` of the server requests go to.
    current: AtomicUsize,
}

impl Servers {
    fn new(urls: Vec<String>) -> Servers {
        assert!(!urls.is_empty());
        assert!(urls.len() <= SERVER_URLS_MAX);
        Servers { urls, current: AtomicUsize::new(0) }
    }

    /// The server requests go to now: its index, for [`Servers::move_past`], and its base URL.
    fn current(&self) -> (usize, &str) {
        // Relaxed: the index is a hint that orders no other memory.
        let server_idx = self.current.load(Ordering::Relaxed);
        assert!(server_idx < self.urls.len());
        (server_idx, &self.urls[server_idx])
    }

    /// Moves on from server `failed_idx`, which a request just found unavailable. Only a move
    /// from the server the client still sends to happens: when several requests to it fail at
    /// once the client moves once, and a late failure of a server already left moves nothing.
    fn move_past(&self, failed_idx: usize, reason: &dyn fmt::Display) {
        assert!(failed_idx < self.urls.len());
        if self.urls.len() == 1 {
            return;
        }
        let next_idx = (failed_idx + 1) % self.urls.len();
        if self.current.compare_exchange(failed_idx, next_idx, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(
                failed = %self.urls[failed_idx],
                next = %self.urls[next_idx],
                %reason,
                "server unavailable; moving to the next server"
            );
        }
    }
}

/// Whether an answer with `status` says the server, rather than the request, is the problem: a
/// proxy in front of it found it down or slow, or it is overloaded. Another replica may answer.
fn is_unavailable_status(status: StatusCode) -> bool {
    matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
}

/// A client of one Baton deployment (one server, or replicas of it that fail over), with an
/// optional bearer token (admin token or runner credential).
#[derive(Debug, Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
    servers: Arc<Servers>,
    token: Option<String>,
}

/// A success answer, with the URL asked and the server that answered.
struct Answer {
    response: http::Response<ResponseBody>,
    url: String,
    server_idx: usize,
}

/// Requests that are not long-polls give up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    /// A client that reaches the servers over the network, through a pooled reqwest client.
    /// `servers` is one base URL or several separated by commas (see [`parse_server_urls`]);
    /// requests go to the first until it is found unavailable.
    pub fn new(servers: &str, token: Option<String>) -> Result<Client> {
        let urls = parse_server_urls(servers)?;
        let transport = ReqwestTransport::new()
            .map_err(|error| Error::InvalidUrl { url: servers.into(), message: error.to_string() })?;
        Ok(Client { transport: Arc::new(transport), servers: Arc::new(Servers::new(urls)), token })
    }

    /// A client whose requests `transport` carries, e.g. the simulation's network. `servers` is
    /// checked as [`Client::new`] checks it, and the current server's URL still prefixes every
    /// request's URI.
    pub fn with_transport(servers: &str, token: Option<String>, transport: Arc<dyn Transport>) -> Result<Client> {
        let urls = parse_server_urls(servers)?;
        Ok(Client { transport, servers: Arc::new(Servers::new(urls)), token })
    }

    /// The same servers (sharing which one is current), through the same transport, with
    /// another bearer token.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client { transport: Arc::clone(&self.transport), servers: Arc::clone(&self.servers), token: Some(token.into()) }
    }

    /// The same servers (sharing which one is current) and token, over a reqwest connection
    /// pool of its own, so its requests never wait behind this client's: the runner renews
    /// leases through one.
    pub fn with_own_connections(&self) -> Result<Client> {
        let transport = ReqwestTransport::new()
            .map_err(|error| Error::InvalidUrl { url: self.servers.urls.join(","), message: error.to_string() })?;
        Ok(Client { transport: Arc::new(transport), servers: Arc::clone(&self.servers), token: self.token.clone() })
    }

    /// The base URL of the server requests go to now.
    pub fn base_url(&self) -> &str {
        self.servers.current().1
    }

    /// Every server's base URL, in the order given: join them with commas to hand the list on
    /// (to a runner's `--server`, say).
    pub fn server_urls(&self) -> &[String] {
        &self.servers.urls
    }

    /// Asks the servers for `/healthz` in turn, from the current one, until one answers, and
    /// leaves that one current; with one server, asks it once. For a program with no retry
    /// loop (the CLI) that is about to send a request it must not repeat. Only this idempotent
    /// GET is ever sent twice, and only to another server.
    pub async fn find_live_server(&self) -> Result<api::Health> {
        let mut asked = 0;
        loop {
            let (server_idx, _) = self.servers.current();
            let outcome = self.health().await;
            asked += 1;
            match outcome {
                // The server was unavailable and the client moved on: ask the next one.
                Err(_) if asked < self.servers.urls.len() && self.servers.current().0 != server_idx => {}
                outcome => return outcome,
            }
        }
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T> {
        let answer = self.send(method.clone(), path, body, timeout).await?;
        let (url, bytes) = self.read_body(&method, answer).await?;
        serde_json::from_slice(&bytes).map_err(|error| Error::Decode { method, url, message: error.to_string() })
    }

    /// The whole body of a success answer, and the URL it came from. A body cut short means the
    /// server went away mid-answer: the client moves on from it.
    async fn read_body(&self, method: &Method, answer: Answer) -> Result<(String, bytes::Bytes)> {
        let url = answer_url(&answer.response, || answer.url.clone());
        match answer.response.into_body().bytes().await {
            Ok(bytes) => Ok((url, bytes)),
            Err(source) => {
                self.servers.move_past(answer.server_idx, &source);
                Err(Error::Transport { method: method.clone(), url, source })
            }
        }
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Answer> {
        let (server_idx, base) = self.servers.current();
        let url = format!("{base}{path}");
        let transport_error = |source| Error::Transport { method: method.clone(), url: url.clone(), source };
        let mut request = new_request(&method, &url).map_err(transport_error)?;
        self.authorize(&mut request).map_err(transport_error)?;
        if let Some(body) = body {
            // reqwest's `json()` reported a body that does not serialize as a failure to send;
            // it stays one, so `is_retryable` answers as before.
            let json = serde_json::to_vec(body).map_err(|error| transport_error(TransportError::new(error)))?;
            request.headers_mut().entry(CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
            *request.body_mut() = json;
        }
        let response = self.transport.send(request, Some(timeout)).await.map_err(|source| {
            self.servers.move_past(server_idx, &source);
            transport_error(source)
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(Answer { response, url, server_idx });
        }
        if is_unavailable_status(status) {
            self.servers.move_past(server_idx, &status);
        }
        let bytes = response.into_body().bytes().await.map_err(|source| {
            self.servers.move_past(server_idx, &source);
            transport_error(source)
        })?;
        let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
            code: format!("http_{}", status.as_u16()),
            message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            hint: None,
        });
        Err(Error::Api { method, url, status, body })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::GET, path, None, REQUEST_TIMEOUT).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call(Method::POST, path, Some(body), REQUEST_TIMEOUT).await
    }

    async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::POST, path, None, REQUEST_TIMEOUT).await
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::DELETE, path, None, REQUEST_TIMEOUT).await
    }

    /// Sends raw bytes as a JSON body, for tests of the server's input handling.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Result<serde_json::Value> {
        let (server_idx, base) = self.servers.current();
        let url = format!("{base}{path}");
        let transport_error = |source| Error::Transport { method: Method::POST, url: url.clone(), source };
        let mut request = new_request(&Method::POST, &url).map_err(transport_error)?;
        request.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        *request.body_mut() = body;
        self.authorize(&mut request).map_err(transport_error)?;
        let response = self.transport.send(request, Some(REQUEST_TIMEOUT)).await.map_err(|source| {
            self.servers.move_past(server_idx, &source);
            transport_error(source)
        })?;
        let status = response.status();
        if is_unavailable_status(status) {
            self.servers.move_past(server_idx, &status);
        }
        let bytes = response.into_body().bytes().await.map_err(|source| {
            self.servers.move_past(server_idx, &source);
            transport_error(source)
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|error| Error::Decode {
                method: Method::POST,
                url,
                message: error.to_string(),
            });
        }
        let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
            code: format!("http_{}", status.as_u16()),
            message: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            hint: None,
        });
        Err(Error::Api { method: Method::POST, url, status, body })
    }

    // ----- runner protocol -----

    pub async fn register(&self, request: &api::RegisterRequest) -> Result<api::RegisterResponse> {
        self.post("/api/v1/runners/register", request).await
    }

    pub async fn register_jit(&self, request: &api::RegisterJitRequest) -> Result<api::RegisterResponse> {
        self.post("/api/v1/runners/register-jit", request).await
    }

    pub async fn open_session(&self) -> Result<api::SessionResponse> {
        self.post_empty("/api/v1/sessions").await
    }

    /// Long-polls for messages; waits up to `wait` for one.
    pub async fn poll(&self, session_id: i64, wait: Duration, free_slots: u32, ack: i64) -> Result<api::PollResponse> {
        let path =
            format!("/api/v1/sessions/{session_id}/messages?wait={}&free_slots={free_slots}&ack={ack}", wait.as_secs());
        self.call::<(), _>(Method::GET, &path, None, wait + REQUEST_TIMEOUT).await
    }

    pub async fn goodbye(&self, session_id: i64) -> Result<api::RunnerInfo> {
        self.delete(&format!("/api/v1/sessions/{session_id}")).await
    }

    pub async fn accept(&self, job_id: i64, attempt: u32, fence: &api::FencedRequest) -> Result<api::LeaseResponse> {
        self.post(&format!("/api/v1/jobs/{job_id}/attempts/{attempt}/accept"), fence).await
    }

    pub async fn renew(&self, job_id: i64, attempt: u32, fence: &api::FencedRequest) -> Result<api::LeaseResponse> {
        self.post(&format!("/api/v1/jobs/{job_id}/attempts/{attempt}/renew"), fence).await
    }

    pub async fn upload_log(
        &self,
        job_id: i64,
        attempt: u32,
        request: &api::LogUploadRequest,
    ) -> Result<api::LogUploadResponse> {
        self.post(&format!("/api/v1/jobs/{job_id}/attempts/{attempt}/logs"), request).await
    }

    pub async fn complete(&self, job_id: i64, attempt: u32, request: &api::CompleteRequest) -> Result<api::Job> {
        self.post(&format!("/api/v1/jobs/{job_id}/attempts/{attempt}/complete"), request).await
    }

    // ----- operator API -----

    pub async fn create_registration_token(
        &self,
        request: &api::CreateRegistrationTokenRequest,
    ) -> Result<api::RegistrationTokenResponse> {
        self.post("/api/v1/registration-tokens", request).await
    }

    pub async fn create_jit_config(&self, request: &api::CreateJitConfigRequest) -> Result<api::JitConfigResponse> {
        self.post("/api/v1/jit-configs", request).await
    }

    pub async fn enqueue_job(&self, spec: &api::JobSpec) -> Result<api::Job> {
        self.post("/api/v1/jobs", spec).await
    }

    pub async fn list_jobs(&self, after: i64, limit: usize) -> Result<api::JobList> {
        self.get(&format!("/api/v1/jobs?after={after}&limit={limit}")).await
    }

    pub async fn get_job(&self, job_id: i64) -> Result<api::Job> {
        self.get(&format!("/api/v1/jobs/{job_id}")).await
    }

    pub async fn cancel_job(&self, job_id: i64) -> Result<api::Job> {
        self.post_empty(&format!("/api/v1/jobs/{job_id}/cancel")).await
    }

    pub async fn job_logs(&self, job_id: i64, attempt: u32, after: u64) -> Result<api::LogPage> {
        self.get(&format!("/api/v1/jobs/{job_id}/attempts/{attempt}/logs?after={after}")).await
    }

    pub async fn submit_run(&self, request: &api::SubmitRunRequest) -> Result<api::Run> {
        self.post("/api/v1/runs", request).await
    }

    pub async fn get_run(&self, run_id: i64) -> Result<api::Run> {
        self.get(&format!("/api/v1/runs/{run_id}")).await
    }

    /// Runs with id below `before` (`None`: the newest), newest first.
    pub async fn list_runs(&self, before: Option<i64>, limit: usize) -> Result<api::RunList> {
        match before {
            Some(before) => self.get(&format!("/api/v1/runs?before={before}&limit={limit}")).await,
            None => self.get(&format!("/api/v1/runs?limit={limit}")).await,
        }
    }

    pub async fn cancel_run(&self, run_id: i64) -> Result<api::Run> {
        self.post_empty(&format!("/api/v1/runs/{run_id}/cancel")).await
    }

    pub async fn pool_snapshot(&self, pool: &str) -> Result<api::PoolSnapshot> {
        self.get(&format!("/api/v1/scaler/snapshot?pool={pool}")).await
    }

    pub async fn scaler_retire(
        &self,
        runner_id: i64,
        request: &api::ScalerRetireRequest,
    ) -> Result<api::RetireResponse> {
        self.post(&format!("/api/v1/scaler/runners/{runner_id}/retire"), request).await
    }

    pub async fn scaler_retire_name(
        &self,
        name: &str,
        request: &api::ScalerRetireRequest,
    ) -> Result<api::RetireResponse> {
        self.post(&format!("/api/v1/scaler/names/{name}/retire"), request).await
    }

    pub async fn scaler_event(&self, request: &api::ScalerEventRequest) -> Result<serde_json::Value> {
        self.post("/api/v1/scaler/events", request).await
    }

    pub async fn create_webhook(&self, request: &api::CreateWebhookRequest) -> Result<api::WebhookSecretResponse> {
        self.post("/api/v1/webhooks", request).await
    }

    pub async fn list_webhooks(&self) -> Result<api::WebhookList> {
        self.get("/api/v1/webhooks").await
    }

    pub async fn remove_webhook(&self, webhook_id: i64) -> Result<api::WebhookInfo> {
        self.delete(&format!("/api/v1/webhooks/{webhook_id}")).await
    }

    pub async fn rotate_webhook(
        &self,
        webhook_id: i64,
        request: &api::RotateWebhookRequest,
    ) -> Result<api::WebhookSecretResponse> {
        self.post(&format!("/api/v1/webhooks/{webhook_id}/rotate"), request).await
    }

    pub async fn webhook_deliveries(&self, webhook_id: i64, after: i64, limit: usize) -> Result<api::DeliveryList> {
        self.get(&format!("/api/v1/webhooks/{webhook_id}/deliveries?after={after}&limit={limit}")).await
    }

    pub async fn redeliver(&self, delivery_id: i64) -> Result<api::DeliveryInfo> {
        self.post_empty(&format!("/api/v1/webhook-deliveries/{delivery_id}/redeliver")).await
    }

    pub async fn list_runners(&self, after: i64, limit: usize) -> Result<api::RunnerList> {
        self.get(&format!("/api/v1/runners?after={after}&limit={limit}")).await
    }

    pub async fn get_runner(&self, runner_id: i64) -> Result<api::RunnerInfo> {
        self.get(&format!("/api/v1/runners/{runner_id}")).await
    }

    pub async fn retire_runner(&self, runner_id: i64) -> Result<api::RetireResponse> {
        self.post_empty(&format!("/api/v1/runners/{runner_id}/retire")).await
    }

    pub async fn drain_runner(&self, runner_id: i64) -> Result<api::RunnerInfo> {
        self.post_empty(&format!("/api/v1/runners/{runner_id}/drain")).await
    }

    pub async fn resume_runner(&self, runner_id: i64) -> Result<api::RunnerInfo> {
        self.post_empty(&format!("/api/v1/runners/{runner_id}/resume")).await
    }

    pub async fn remove_runner(&self, runner_id: i64) -> Result<api::RunnerInfo> {
        self.delete(&format!("/api/v1/runners/{runner_id}")).await
    }

    pub async fn health(&self) -> Result<api::Health> {
        self.get("/healthz").await
    }

    pub async fn metrics_text(&self) -> Result<String> {
        let answer = self.send::<()>(Method::GET, "/metrics", None, REQUEST_TIMEOUT).await?;
        let (_, bytes) = self.read_body(&Method::GET, answer).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn openapi(&self) -> Result<serde_json::Value> {
        self.get("/api/openapi.json").await
    }

    /// Follows the event stream after sequence `after`, from the current server: the stream
    /// stays with it until it ends or breaks, and a caller that reopens it reaches the server
    /// current then.
    pub async fn events(&self, after: i64) -> Result<EventStream> {
        let (server_idx, base) = self.servers.current();
        let url = format!("{base}/api/v1/events?after={after}");
        let transport_error = |source| Error::Transport { method: Method::GET, url: url.clone(), source };
        let mut request = new_request(&Method::GET, &url).map_err(transport_error)?;
        request.headers_mut().insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        self.authorize(&mut request).map_err(transport_error)?;
        // No timeout: the stream stays open for as long as the server keeps it.
        let response = self.transport.send(request, None).await.map_err(|source| {
            self.servers.move_past(server_idx, &source);
            transport_error(source)
        })?;
        if !response.status().is_success() {
            let status = response.status();
            if is_unavailable_status(status) {
                self.servers.move_past(server_idx, &status);
            }
            let bytes = response.into_body().bytes().await.unwrap_or_default();
            let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
                code: format!("http_{}", status.as_u16()),
                message: String::from_utf8_lossy(&bytes).into(),
                hint: None,
            });
            return Err(Error::Api { method: Method::GET, url, status, body });
        }
        Ok(EventStream {
            body: response.into_body(),
            buffer: Vec::new(),
            url,
            servers: Arc::clone(&self.servers),
            server_idx,
        })
    }

    /// Adds the bearer token, marked sensitive as reqwest's `bearer_auth` marks it.
    fn authorize(&self, request: &mut http::Request<Vec<u8>>) -> Result<(), TransportError> {
        if let Some(token) = &self.token {
            let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(TransportError::new)?;
            value.set_sensitive(true);
            request.headers_mut().append(AUTHORIZATION, value);
        }
        Ok(())
    }
}

/// The base URLs in `servers`: one URL, or several separated by commas
/// (`http://ci-a:8420,http://ci-b:8420`), each an http(s) URL. Whitespace around each and
/// trailing slashes are dropped. An empty list or entry, a URL listed twice and more than
/// [`SERVER_URLS_MAX`] URLs are refused.
pub fn parse_server_urls(servers: &str) -> Result<Vec<String>> {
    let invalid = |message: String| Error::InvalidUrl { url: servers.into(), message };
    if servers.trim().is_empty() {
        return Err(invalid("no server URL given".into()));
    }
    let n_urls = servers.split(',').count();
    if n_urls > SERVER_URLS_MAX {
        return Err(invalid(format!("{n_urls} URLs; at most {SERVER_URLS_MAX} may be given")));
    }
    let mut urls: Vec<String> = Vec::with_capacity(n_urls);
    for entry in servers.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(invalid("an empty entry: separate URLs with single commas".into()));
        }
        let url = check_base_url(entry)?;
        if urls.contains(&url) {
            return Err(Error::InvalidUrl { url: entry.into(), message: "given twice".into() });
        }
        urls.push(url);
    }
    assert!(!urls.is_empty());
    assert!(urls.len() <= SERVER_URLS_MAX);
    Ok(urls)
}

/// The server's base URL without its trailing slashes, if it is an http(s) URL.
fn check_base_url(base_url: &str) -> Result<String> {
    let base = base_url.trim_end_matches('/').to_string();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(Error::InvalidUrl { url: base_url.into(), message: "must start with http:// or https://".into() });
    }
    // Parsed as every request's URL will be, so a typo fails here rather than on each request.
    reqwest::Url::parse(&base)
        .map_err(|error| Error::InvalidUrl { url: base_url.into(), message: error.to_string() })?;
    Ok(base)
}

/// A request to `url` with no headers and an empty body.
///
/// The URL is parsed as reqwest parses it (which percent-encodes, say, a space in a runner
/// name) before it becomes the request's URI, so every transport sees what reqwest would send.
fn new_request(method: &Method, url: &str) -> Result<http::Request<Vec<u8>>, TransportError> {
    let parsed = reqwest::Url::parse(url).map_err(TransportError::new)?;
    let uri: http::Uri = parsed.as_str().parse().map_err(TransportError::new)?;
    let mut request = http::Request::new(Vec::new());
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    Ok(request)
}

/// The URL an answer came from: the one after redirects when the transport knows it.
fn answer_url(response: &http::Response<ResponseBody>, requested: impl FnOnce() -> String) -> String {
    response.body().final_url().map_or_else(requested, str::to_string)
}

/// An open server-sent event stream of [`api::Event`]s.
#[derive(Debug)]
pub struct EventStream {
    body: ResponseBody,
    buffer: Vec<u8>,
    url: String,
    /// The client's servers and the one this stream reads from, to move on from it when the
    /// stream breaks.
    servers: Arc<Servers>,
    server_idx: usize,
}

/// Longest event the stream accepts before giving up on the connection.
const SSE_EVENT_BYTES_MAX: usize = 4 * 1024 * 1024;

impl EventStream {
    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<Result<api::Event>> {
        loop {
            if let Some(end) = find_blank_line(&self.buffer) {
                let block: Vec<u8> = self.buffer.drain(..end.1).collect();
                let text = String::from_utf8_lossy(&block[..end.0]);
                let data: Vec<&str> = text
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(|data| data.strip_prefix(' ').unwrap_or(data))
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let joined = data.join("\n");
                return Some(serde_json::from_str(&joined).map_err(|error| Error::Decode {
                    method: Method::GET,
                    url: self.url.clone(),
                    message: error.to_string(),
                }));
            }
            if self.buffer.len() > SSE_EVENT_BYTES_MAX {
                return Some(Err(Error::Decode {
                    method: Method::GET,
                    url: self.url.clone(),
                    message: "event over 4 MiB".into(),
                }));
            }
            match self.body.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => return None,
                Err(source) => {
                    self.servers.move_past(self.server_idx, &source);
                    return Some(Err(Error::Transport { method: Method::GET, url: self.url.clone(), source }));
                }
            }
        }
    }
}

/// The end of the first event block (`\n\n` or `\r\n\r\n`): (content end, block end).
fn find_blank_line(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|window| window == b"\n\n").map(|at| (at, at + 2));
    let crlf = buffer.windows(4).position(|window| window == b"\r\n\r\n").map(|at| (at, at + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings = [100, 200, 400, 800, 1000, 1000];
        for ceiling in ceilings {
            assert!(backoff.next_delay() <= Duration::from_millis(ceiling));
        }
    }

    #[test]
    fn blank_line_detection() {
        assert_eq!(find_blank_line(b"data: x\n\nrest"), Some((7, 9)));
        assert_eq!(find_blank_line(b"data: x\r\n\r\n"), Some((7, 11)));
        assert_eq!(find_blank_line(b"data: x\n"), None);
    }

    #[test]
    fn server_lists() {
        let check = |servers: &str, expect: expect_test::Expect| {
            let parsed = match parse_server_urls(servers) {
                Ok(urls) => urls.join(" "),
                Err(error) => format!("error: {error}"),
            };
            expect.assert_eq(&parsed);
        };
        check("http://ci:8420/", expect_test::expect!["http://ci:8420"]);
        check(
            " http://a:8420 , https://b:8420//,http://c ",
            expect_test::expect!["http://a:8420 https://b:8420 http://c"],
        );
        check("", expect_test::expect![[r#"error: invalid server URL "": no server URL given"#]]);
        check(
            "http://a,,http://b",
            expect_test::expect![[
                r#"error: invalid server URL "http://a,,http://b": an empty entry: separate URLs with single commas"#
            ]],
        );
        check(
            "http://a,",
            expect_test::expect![[
                r#"error: invalid server URL "http://a,": an empty entry: separate URLs with single commas"#
            ]],
        );
        check(
            "http://a,ci:8420",
            expect_test::expect![[r#"error: invalid server URL "ci:8420": must start with http:// or https://"#]],
        );
        check(
            "http://a http://b",
            expect_test::expect![[
                r#"error: invalid server URL "http://a http://b": invalid international domain name"#
            ]],
        );
        check("http://a/,http://a", expect_test::expect![[r#"error: invalid server URL "http://a": given twice"#]]);
        let many = (0..=SERVER_URLS_MAX).map(|n| format!("http://s{n}")).collect::<Vec<_>>().join(",");
        assert_eq!(parse_server_urls(&many[..many.rfind(',').expect("a comma")]).map(|urls| urls.len()).ok(), Some(16));
        let error = parse_server_urls(&many).expect_err("one too many").to_string();
        assert!(error.ends_with(": 17 URLs; at most 16 may be given"), "{error}");
    }

    #[test]
    fn only_transport_and_server_errors_are_retryable() {
        let api_error = |status: u16| Error::Api {
            method: Method::GET,
            url: "http://x".into(),
            status: StatusCode::from_u16(status).expect("valid status"),
            body: ErrorBody { code: "x".into(), message: "m".into(), hint: None },
        };
        assert!(api_error(503).is_retryable());
        assert!(api_error(429).is_retryable());
        assert!(!api_error(409).is_retryable());
        assert!(!api_error(401).is_retryable());
        let transport_error = |source| Error::Transport { method: Method::GET, url: "http://x".into(), source };
        assert!(transport_error(TransportError::new("connection reset")).is_retryable());
        assert!(transport_error(TransportError::timed_out("no answer in 30s")).is_retryable());
    }
}
