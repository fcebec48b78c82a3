//! Webhook delivery: turns committed events into deliveries and sends them, signed as Standard
//! Webhooks specifies, retrying with exponential backoff and jitter until a receiver answers 2xx
//! or the retry horizon passes.
//!
//! The dispatcher wakes after every commit that appended events, and when the next retry is
//! due. Endpoints are served concurrently; an `ordered` endpoint gets one delivery at a time in
//! event order (a failing delivery holds back the later ones), any other gets every due
//! delivery, oldest first, without waiting on earlier failures. Every server replica runs a
//! dispatcher: a delivery is claimed in the store before it is sent, so only one sends it.
//!
//! Outbound requests never reach loopback, link-local or cloud metadata addresses unless the
//! address is allowed in the server's configuration: the name is resolved here, every answer
//! is checked, and the request goes to a checked address only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use baton_core::{Delivery, Timestamp, Webhook};
use baton_store::webhooks::{AttemptOutcome, live_secrets};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use crate::state::AppState;

/// How deliveries are retried and where they may go.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Addresses allowed although they are loopback or link-local (tests, a local receiver).
    pub allow: Vec<IpAddr>,
    /// The delay after the first failed attempt; it doubles after each, up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// A delivery not delivered this long after it was made fails for good.
    pub horizon: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Where requests go instead of the built-in HTTP client (whose resolver keeps them off
    /// internal addresses): the fleet simulator's network.
    pub transport: Option<Arc<dyn baton_client::Transport>>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow: Vec::new(),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            horizon: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            transport: None,
        }
    }
}

/// Deliveries attempted per endpoint in one pass, at most.
const DUE_PER_PASS: usize = 32;
const USER_AGENT: &str = concat!("Baton-Webhooks/", env!("CARGO_PKG_VERSION"));
/// How much longer than an attempt's timeout a claimed delivery stays claimed.
const CLAIM_MARGIN: Duration = Duration::from_secs(1);
/// The dispatcher looks again at least this often.
const IDLE_WAKE: Duration = Duration::from_secs(5);

/// A new `whsec_` secret: 32 random bytes, base64.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Checks a secret given by a user: `whsec_` and base64 of at least 24 bytes.
pub fn valid_secret(secret: &str) -> bool {
    secret
        .strip_prefix("whsec_")
        .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded).ok())
        .is_some_and(|key| (24..=64).contains(&key.len()))
}

/// The `webhook-signature` value for one secret: `v1,` and the base64 HMAC-SHA256 of
/// `id.timestamp.body`, keyed with the secret's decoded bytes.
pub fn sign(secret: &str, message_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok()?;
    mac.update(format!("{message_id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
}

/// True for addresses a webhook may not reach unless allowed: loopback, unspecified,
/// link-local (which holds most clouds' metadata service), multicast, and the metadata
/// addresses outside link-local.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets() == [100, 100, 100, 200]
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xffc0) == 0xfe80
                || v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
        }
    }
}

/// Resolves names for webhook requests, keeping only addresses webhooks may reach.
#[derive(Debug, Clone)]
struct GuardedResolver {
    allow: Arc<Vec<IpAddr>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .into_iter()
                .filter(|address| !is_internal(address.ip()) || allow.contains(&address.ip()))
                .collect();
            if permitted.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = format!(
                    "{host} resolves only to loopback, link-local or metadata addresses; allow them in the server's configuration to deliver there"
                )
                .into();
                return Err(error);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks a URL before it is stored: http or https, a host, at most 2048 bytes.
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    if url.len() > 2048 {
        return Err("at most 2048 bytes".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("not a URL: {error}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be http:// or https://".into());
    }
    if parsed.host().is_none() {
        return Err("needs a host".into());
    }
    Ok(parsed)
}

/// Starts the dispatcher.
pub fn spawn(state: Arc<AppState>, settings: WebhookSettings, shutdown: watch::Receiver<bool>) {
    tokio::spawn(run(state, settings, shutdown));
}

/// What carries webhook requests.
#[derive(Debug, Clone)]
enum Sender {
    Http(reqwest::Client),
    Transport(Arc<dyn baton_client::Transport>),
}

async fn run(state: Arc<AppState>, settings: WebhookSettings, mut shutdown: watch::Receiver<bool>) {
    let http = match &settings.transport {
        Some(transport) => Sender::Transport(transport.clone()),
        None => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let resolver = GuardedResolver { allow: Arc::new(settings.allow.clone()) };
            match reqwest::Client::builder()
                .dns_resolver(Arc::new(resolver))
                .timeout(settings.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(USER_AGENT)
                .build()
            {
                Ok(http) => Sender::Http(http),
                Err(error) => {
                    tracing::error!(%error, "webhooks cannot be delivered: building the HTTP client failed");
                    return;
                }
            }
        }
    };
    let mut events = state.hub.subscribe_events();
    let mut added = state.hub.subscribe_webhooks();
    loop {
        let (wake, endpoints) = match dispatch_once(&state, &http, &settings).await {
            Ok((next, endpoints)) => (next.unwrap_or(IDLE_WAKE).min(IDLE_WAKE), endpoints),
            Err(error) => {
                tracing::warn!(error = %error.message, "webhook dispatch failed; retrying");
                (Duration::from_secs(1), 1)
            }
        };
        // Without endpoints, commits have nobody to be delivered to: wait for one to be added
        // here, or look again after the idle wait (one added by another replica). Their events
        // stay in the outbox meanwhile.
        tokio::select! {
            biased;
            _ = events.changed(), if endpoints > 0 => {}
            _ = added.changed() => {}
            _ = tokio::time::sleep(wake) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// One pass: new events become deliveries, due deliveries are sent. Answers how long until
/// the next retry is due, if one is pending, and how many endpoints there are.
async fn dispatch_once(
    state: &Arc<AppState>,
    http: &Sender,
    settings: &WebhookSettings,
) -> Result<(Option<Duration>, usize), crate::error::ApiError> {
    let webhooks = state.run_short(|store| store.webhooks()).await?;
    let endpoints = webhooks.len();
    let mut passes = Vec::new();
    for webhook in webhooks {
        let state = state.clone();
        let http = http.clone();
        let settings = settings.clone();
        passes.push(tokio::spawn(async move { serve_endpoint(&state, &http, &settings, webhook.id).await }));
    }
    let mut next: Option<Duration> = None;
    for pass in passes {
        if let Ok(Ok(Some(wait))) = pass.await {
            next = Some(next.map_or(wait, |current| current.min(wait)));
        }
    }
    Ok((next, endpoints))
}

async fn serve_endpoint(
    state: &Arc<AppState>,
    http: &Sender,
    settings: &WebhookSettings,
    webhook_id: i64,
) -> Result<Option<Duration>, crate::error::ApiError> {
    loop {
        let now = state.now();
        let read = state.run(move |store| store.materialize_deliveries(webhook_id, now)).await?;
        if read < baton_store::webhooks::MATERIALIZE_BATCH {
            break;
        }
    }
    loop {
        let now = state.now();
        // A read first, so an idle pass writes nothing.
        let (_, due, next) = state.run(move |store| store.due_deliveries(webhook_id, now, DUE_PER_PASS)).await?;
        if due.is_empty() {
            return Ok(next.map(|at| Duration::from_millis(at.0.saturating_sub(now.0))));
        }
        // Claimed, so that no other replica sends them too (one that got there first leaves
        // fewer or none: look again). An attempt takes at most the timeout; the margin covers
        // recording it.
        let hold_each = settings.timeout + CLAIM_MARGIN;
        let (webhook, due) =
            state.run(move |store| store.claim_due_deliveries(webhook_id, now, DUE_PER_PASS, hold_each)).await?;
        if due.is_empty() {
            continue;
        }
        let mut delivered_all = true;
        for delivery in due {
            let outcome = attempt(state, http, settings, &webhook, &delivery).await;
            delivered_all &= outcome.delivered;
            let id = delivery.id;
            let now = state.now();
            state.run(move |store| store.record_delivery_attempt(id, &outcome, now)).await?;
            if webhook.ordered && !delivered_all {
                break;
            }
        }
        if !delivered_all {
            // Failures wait for their retry; look again then (or on the next commit).
            let now = state.now();
            let (_, _, next) = state.run(move |store| store.due_deliveries(webhook_id, now, 0)).await?;
            return Ok(next.map(|at| Duration::from_millis(at.0.saturating_sub(now.0))));
        }
    }
}

/// Sends one delivery and says how it went and when to retry.
async fn attempt(
    state: &AppState,
    http: &Sender,
    settings: &WebhookSettings,
    webhook: &Webhook,
    delivery: &Delivery,
) -> AttemptOutcome {
    let started = Instant::now();
    let now = state.now();
    let result = send(http, settings, webhook, delivery, now).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (delivered, response_code, error) = match result {
        Ok(status) if (200..300).contains(&status) => (true, Some(status), None),
        Ok(status) => (false, Some(status), Some(format!("the receiver answered {status}"))),
        Err(error) => (false, None, Some(error)),
    };
    state.metrics.record_webhook(delivered, started.elapsed());
    let retry_at = if delivered {
        None
    } else {
        let age = Duration::from_millis(now.0.saturating_sub(delivery.created_at.0));
        let delay = backoff(settings, delivery.attempts.saturating_add(1));
        (age + delay < settings.horizon).then(|| now.plus(delay))
    };
    if let Some(error) = &error {
        tracing::info!(webhook = webhook.id, delivery = delivery.id, attempt = delivery.attempts + 1, %error, "webhook delivery failed");
    }
    AttemptOutcome { delivered, response_code, error, latency_ms, retry_at }
}

/// The delay before attempt `attempts + 1`: doubling from `retry_initial`, at most
/// `retry_max`, then a random part of it (between half and all) so receivers coming back are
/// not hit by every sender at once.
fn backoff(settings: &WebhookSettings, attempts: u32) -> Duration {
    let exponential = settings.retry_initial.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = exponential.min(settings.retry_max);
    // The client's entropy: a simulated fleet seeds it, so retries replay exactly.
    let share = baton_client::entropy::below(1_000_000) as f64 / 1_000_000.0;
    capped.mul_f64(0.5 + share * 0.5)
}

async fn send(
    http: &Sender,
    settings: &WebhookSettings,
    webhook: &Webhook,
    delivery: &Delivery,
    now: Timestamp,
) -> Result<u16, String> {
    let url = check_url(&webhook.url)?;
    if let Some(host) = url.host_str()
        && let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>()
        && is_internal(ip)
        && !settings.allow.contains(&ip)
    {
        return Err(format!(
            "{ip} is a loopback, link-local or metadata address; allow it in the server's configuration to deliver there"
        ));
    }
    let timestamp = i64::try_from(now.0 / 1000).unwrap_or(i64::MAX);
    let signatures: Vec<String> = live_secrets(webhook, now)
        .iter()
        .filter_map(|secret| sign(secret, &delivery.message_id, timestamp, delivery.payload.as_bytes()))
        .collect();
    let headers = [
        ("content-type", "application/json".to_string()),
        ("webhook-id", delivery.message_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
        ("x-baton-event", delivery.event.clone()),
    ];
    match http {
        Sender::Http(http) => {
            let mut request = http.post(url).body(delivery.payload.clone());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.send().await.map_err(|error| {
                let mut message = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    message.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                message
            })?;
            Ok(response.status().as_u16())
        }
        Sender::Transport(transport) => {
            let mut request = axum::http::Request::new(delivery.payload.clone().into_bytes());
            *request.method_mut() = axum::http::Method::POST;
            *request.uri_mut() = url.as_str().parse().map_err(|error| format!("{error}"))?;
            for (name, value) in headers {
                let value = axum::http::HeaderValue::from_str(&value).map_err(|error| format!("{name}: {error}"))?;
                request.headers_mut().insert(name, value);
            }
            request
                .headers_mut()
                .insert(axum::http::header::USER_AGENT, axum::http::HeaderValue::from_static(USER_AGENT));
            let response = transport.send(request, Some(settings.timeout)).await.map_err(|error| error.to_string())?;
            let status = response.status().as_u16();
            let _ = response.into_body().bytes().await;
            Ok(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "0.0.0.0",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.100.100.200",
            "fd00:ec2::254",
        ] {
            assert!(is_internal(internal.parse().expect("ip")), "{internal}");
        }
        for external in ["93.184.216.34", "10.0.0.1", "2606:4700::1111"] {
            assert!(!is_internal(external.parse().expect("ip")), "{external}");
        }
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).expect("signs");
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(valid_secret(secret));
        assert!(!valid_secret("whsec_short"));
        assert!(valid_secret(&generate_secret()));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_maximum() {
        let settings = WebhookSettings {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..Default::default()
        };
        for (attempts, full) in [(1, 1), (2, 2), (3, 4), (7, 60), (30, 60)] {
            let delay = backoff(&settings, attempts);
            let full = Duration::from_secs(full);
            assert!(delay >= full / 2 && delay <= full, "attempt {attempts}: {delay:?}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://hooks.example.com/baton").is_ok());
        assert!(check_url("ftp://example.com").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(2048))).is_err());
    }
}
