//! Webhooks: endpoints, and deliveries made from the events table.
//!
//! Every state change appends its event in the same transaction; that event row is the outbox.
//! Each endpoint keeps a cursor (the newest event already turned into deliveries); turning
//! events into deliveries and moving the cursor is one transaction, and a delivery stays
//! `pending` until a receiver answered 2xx or the retry horizon passed. A crash anywhere loses
//! nothing: the events and the pending deliveries are in the store.

use baton_core::{Delivery, EventKind, RunId, Timestamp, Webhook};
use serde_json::json;

use crate::error::{Error, Result};
use crate::ops::{Store, not_found};
use crate::tx::{Event, Tx};

/// The webhook event names an endpoint may subscribe to.
pub const WEBHOOK_EVENTS: [&str; 3] = ["workflow_job", "workflow_run", "runner"];
/// Endpoints, at most.
pub const WEBHOOKS_MAX: usize = 100;
/// Events turned into deliveries per endpoint in one transaction, at most.
pub const MATERIALIZE_BATCH: usize = 256;

/// A new endpoint.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub ordered: bool,
}

/// How one delivery attempt went.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub delivered: bool,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u64,
    /// When to try again; `None` gives up (the retry horizon passed).
    pub retry_at: Option<Timestamp>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Secret {
    secret: String,
    #[serde(default)]
    expires_at: Option<u64>,
}

/// The secrets of an endpoint that sign now, newest first.
pub fn live_secrets(webhook: &Webhook, now: Timestamp) -> Vec<String> {
    serde_json::from_str::<Vec<Secret>>(&webhook.secrets)
        .unwrap_or_default()
        .into_iter()
        .filter(|secret| secret.expires_at.is_none_or(|at| at > now.0))
        .map(|secret| secret.secret)
        .collect()
}

fn rfc3339(at: Timestamp) -> String {
    jiff::Timestamp::from_millisecond(i64::try_from(at.0).unwrap_or(i64::MAX))
        .map(|time| time.to_string())
        .unwrap_or_default()
}

impl Store {
    /// Adds an endpoint. It receives the events after this moment.
    pub fn add_webhook(&self, new: &NewWebhook, now: Timestamp) -> Result<Webhook> {
        for event in &new.events {
            if !WEBHOOK_EVENTS.contains(&event.as_str()) {
                return Err(Error::Invalid {
                    field: "events",
                    message: format!("unknown event {event:?}; use {}", WEBHOOK_EVENTS.join(", ")),
                });
            }
        }
        let secrets = serde_json::to_string(&[Secret { secret: new.secret.clone(), expires_at: None }])
            .map_err(|error| Error::Invalid { field: "secret", message: error.to_string() })?;
        self.write(|tx, _| {
            if tx.webhooks_active()?.len() >= WEBHOOKS_MAX {
                return Err(Error::Conflict {
                    code: "too_many_webhooks",
                    message: format!("at most {WEBHOOKS_MAX} webhook endpoints"),
                    hint: Some("remove one first".into()),
                });
            }
            let mut webhook = Webhook {
                id: 0,
                url: new.url.clone(),
                events: new.events.clone(),
                secrets: secrets.clone(),
                ordered: new.ordered,
                cursor: tx.event_last_seq()?,
                removed: false,
                created_at: now,
            };
            webhook.id = tx.webhook_insert(&webhook)?;
            Ok(webhook)
        })
    }

    pub fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.read(|tx| Ok(tx.webhooks_active()?))
    }

    pub fn webhook(&self, id: i64) -> Result<Webhook> {
        self.read(|tx| tx.webhook_get(id)?.filter(|webhook| !webhook.removed).ok_or_else(|| not_found("webhook", id)))
    }

    /// Removes an endpoint: nothing more is delivered to it.
    pub fn remove_webhook(&self, id: i64) -> Result<Webhook> {
        self.write(|tx, _| {
            let mut webhook = tx.webhook_get(id)?.ok_or_else(|| not_found("webhook", id))?;
            if !webhook.removed {
                webhook.removed = true;
                tx.webhook_update(&webhook)?;
            }
            Ok(webhook)
        })
    }

    /// Adds `secret` as the newest signing secret; the older ones keep signing until
    /// `now + overlap`, so receivers can switch without losing a delivery.
    pub fn rotate_webhook_secret(&self, id: i64, secret: &str, overlap_ms: u64, now: Timestamp) -> Result<Webhook> {
        self.write(|tx, _| {
            let mut webhook =
                tx.webhook_get(id)?.filter(|webhook| !webhook.removed).ok_or_else(|| not_found("webhook", id))?;
            let mut secrets: Vec<Secret> = serde_json::from_str(&webhook.secrets).unwrap_or_default();
            let until = now.0.saturating_add(overlap_ms);
            for old in &mut secrets {
                old.expires_at = Some(old.expires_at.map_or(until, |at| at.min(until)));
            }
            secrets.retain(|old| old.expires_at.is_none_or(|at| at > now.0));
            secrets.insert(0, Secret { secret: secret.to_string(), expires_at: None });
            webhook.secrets = serde_json::to_string(&secrets)
                .map_err(|error| Error::Invalid { field: "secret", message: error.to_string() })?;
            tx.webhook_update(&webhook)?;
            Ok(webhook)
        })
    }

    pub fn deliveries(&self, webhook_id: i64, after: i64, limit: usize) -> Result<Vec<Delivery>> {
        self.read(|tx| {
            tx.webhook_get(webhook_id)?.ok_or_else(|| not_found("webhook", webhook_id))?;
            Ok(tx.deliveries_of(webhook_id, after, limit)?)
        })
    }

    pub fn delivery(&self, id: i64) -> Result<Delivery> {
        self.read(|tx| tx.delivery_get(id)?.ok_or_else(|| not_found("delivery", id)))
    }

    /// Delivers a message again: a new pending delivery with the same `webhook-id` and body.
    pub fn redeliver(&self, delivery_id: i64, now: Timestamp) -> Result<Delivery> {
        self.write(|tx, _| {
            let old = tx.delivery_get(delivery_id)?.ok_or_else(|| not_found("delivery", delivery_id))?;
            tx.webhook_get(old.webhook_id)?
                .filter(|webhook| !webhook.removed)
                .ok_or_else(|| not_found("webhook", old.webhook_id))?;
            let mut fresh = Delivery {
                id: 0,
                status: "pending".into(),
                attempts: 0,
                response_code: None,
                error: None,
                latency_ms: None,
                next_attempt_at: now,
                created_at: now,
                completed_at: None,
                ..old
            };
            fresh.id = tx.delivery_insert(&fresh)?;
            Ok(fresh)
        })
    }

    /// Turns the events after the endpoint's cursor into pending deliveries and moves the
    /// cursor, in one transaction. Answers how many events were read (less than the batch:
    /// caught up).
    pub fn materialize_deliveries(&self, webhook_id: i64, now: Timestamp) -> Result<usize> {
        self.write(|tx, _| {
            let Some(mut webhook) = tx.webhook_get(webhook_id)?.filter(|webhook| !webhook.removed) else {
                return Ok(0);
            };
            let events = tx.events_after(webhook.cursor, MATERIALIZE_BATCH)?;
            for event in &events {
                if let Some((name, payload)) = payload(tx, event)?
                    && (webhook.events.is_empty() || webhook.events.iter().any(|wanted| wanted == name))
                {
                    let delivery = Delivery {
                        id: 0,
                        webhook_id,
                        event_seq: event.seq,
                        message_id: format!("msg_{}_{}", webhook_id, event.seq.0),
                        event: name.to_string(),
                        payload: payload.to_string(),
                        status: "pending".into(),
                        attempts: 0,
                        response_code: None,
                        error: None,
                        latency_ms: None,
                        next_attempt_at: now,
                        created_at: now,
                        completed_at: None,
                    };
                    tx.delivery_insert(&delivery)?;
                }
            }
            if let Some(last) = events.last() {
                webhook.cursor = last.seq;
                tx.webhook_update(&webhook)?;
            }
            Ok(events.len())
        })
    }

    /// The endpoint's deliveries due now: for an ordered endpoint only its oldest pending one,
    /// and only once due; otherwise every due pending one, oldest first, at most `limit`.
    pub fn due_deliveries(
        &self,
        webhook_id: i64,
        now: Timestamp,
        limit: usize,
    ) -> Result<(Webhook, Vec<Delivery>, Option<Timestamp>)> {
        self.read(|tx| due_now(tx, webhook_id, now, limit))
    }

    /// Claims the endpoint's deliveries due now (as [`Store::due_deliveries`] picks them) for
    /// the caller to send: each one's next attempt moves `hold_each` further out per place in
    /// the batch (the batch is sent one by one), so no other dispatcher (another server replica)
    /// sends it meanwhile, and one that dies mid-send leaves it due again once the hold ends.
    /// An ordered endpoint's oldest pending delivery, claimed, holds back the later ones
    /// everywhere. Recording the attempt sets the real next attempt.
    pub fn claim_due_deliveries(
        &self,
        webhook_id: i64,
        now: Timestamp,
        limit: usize,
        hold_each: std::time::Duration,
    ) -> Result<(Webhook, Vec<Delivery>)> {
        let hold_each_ms = u64::try_from(hold_each.as_millis()).unwrap_or(u64::MAX);
        self.write(|tx, _| {
            let (webhook, due, _) = due_now(tx, webhook_id, now, limit)?;
            for (place, delivery) in (1u64..).zip(&due) {
                let mut claimed = delivery.clone();
                claimed.next_attempt_at = Timestamp(now.0.saturating_add(hold_each_ms.saturating_mul(place)));
                tx.delivery_update(&claimed)?;
            }
            Ok((webhook, due))
        })
    }

    /// Records one delivery attempt.
    pub fn record_delivery_attempt(
        &self,
        delivery_id: i64,
        outcome: &AttemptOutcome,
        now: Timestamp,
    ) -> Result<Delivery> {
        self.write(|tx, _| {
            let mut delivery = tx.delivery_get(delivery_id)?.ok_or_else(|| not_found("delivery", delivery_id))?;
            if delivery.status != "pending" {
                return Ok(delivery);
            }
            delivery.attempts = delivery.attempts.saturating_add(1);
            delivery.response_code = outcome.response_code;
            delivery.error = outcome.error.clone();
            delivery.latency_ms = Some(outcome.latency_ms);
            match (outcome.delivered, outcome.retry_at) {
                (true, _) => {
                    delivery.status = "delivered".into();
                    delivery.completed_at = Some(now);
                }
                (false, Some(at)) => delivery.next_attempt_at = at,
                (false, None) => {
                    delivery.status = "failed".into();
                    delivery.completed_at = Some(now);
                }
            }
            tx.delivery_update(&delivery)?;
            Ok(delivery)
        })
    }
}

/// The endpoint, its deliveries due now (see [`Store::due_deliveries`]) and when the next of
/// the others is due.
fn due_now(
    tx: &mut dyn Tx,
    webhook_id: i64,
    now: Timestamp,
    limit: usize,
) -> Result<(Webhook, Vec<Delivery>, Option<Timestamp>)> {
    let webhook = tx.webhook_get(webhook_id)?.ok_or_else(|| not_found("webhook", webhook_id))?;
    let pending = tx.deliveries_pending(webhook_id, if webhook.ordered { 1 } else { 1000 })?;
    let next = pending.iter().map(|delivery| delivery.next_attempt_at).filter(|at| *at > now).min();
    let due = pending.into_iter().filter(|delivery| delivery.next_attempt_at <= now).take(limit).collect();
    Ok((webhook, due, next))
}

/// The webhook event name and body of an event, or `None` for events no webhook carries.
/// Bodies are shaped like GitHub's where the fields mean the same.
fn payload(tx: &mut dyn Tx, event: &Event) -> Result<Option<(&'static str, serde_json::Value)>> {
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
    let common = json!({ "event_seq": event.seq.0, "at": rfc3339(event.at), "kind": event.kind.to_string() });
    let job_action = match event.kind {
        EventKind::JobQueued => Some("queued"),
        EventKind::JobStarted => Some("in_progress"),
        EventKind::JobCompleted => Some("completed"),
        _ => None,
    };
    if let (Some(action), Some(job_id)) = (job_action, event.job_id) {
        let Some(job) = tx.job_get(job_id)? else { return Ok(None) };
        let attempt = match event.attempt {
            Some(number) => tx.attempt_get(job_id, number)?,
            None => None,
        };
        let runner = match attempt.as_ref().and_then(|attempt| attempt.runner_id).or(event.runner_id) {
            Some(id) => tx.runner_get(id)?,
            None => None,
        };
        let workflow_name = match job.run_id {
            Some(run_id) => tx.run_get(run_id)?.map(|run| run.name),
            None => None,
        };
        let conclusion = (action == "completed").then(|| data["conclusion"].as_str().map(str::to_string)).flatten();
        let body = json!({
            "action": action,
            "workflow_job": {
                "id": job.id.0,
                "run_id": job.run_id.map(|id| id.0),
                "workflow_name": workflow_name,
                "name": job.name,
                "status": action,
                "conclusion": conclusion,
                "labels": job.labels,
                "created_at": rfc3339(job.created_at),
                "started_at": attempt.as_ref().and_then(|attempt| attempt.started_at).map(rfc3339),
                "completed_at": (action == "completed").then(|| rfc3339(event.at)),
                "runner_id": runner.as_ref().map(|runner| runner.id.0),
                "runner_name": runner.as_ref().map(|runner| runner.name.clone()),
                "runner_group_name": runner.as_ref().map(|runner| runner.pool.clone()),
                "run_attempt": event.attempt.map(|number| number.0),
            },
            "baton": common,
        });
        return Ok(Some(("workflow_job", body)));
    }
    let run_action = match event.kind {
        EventKind::RunQueued => Some("requested"),
        EventKind::RunCompleted => Some("completed"),
        _ => None,
    };
    if let Some(action) = run_action {
        let Some(run_id) = data["run_id"].as_i64() else { return Ok(None) };
        let Some(run) = tx.run_get(RunId(run_id))? else { return Ok(None) };
        let body = json!({
            "action": action,
            "workflow_run": {
                "id": run.id.0,
                "name": run.name,
                "path": run.file_name,
                "status": if action == "completed" { "completed" } else { "queued" },
                "conclusion": if action == "completed" { data["conclusion"].clone() } else { serde_json::Value::Null },
                "created_at": rfc3339(run.created_at),
                "updated_at": rfc3339(event.at),
            },
            "baton": common,
        });
        return Ok(Some(("workflow_run", body)));
    }
    let runner_action = match event.kind {
        EventKind::RunnerOnline => Some("online"),
        EventKind::RunnerOffline => Some("offline"),
        EventKind::RunnerRetiring => Some("retired"),
        EventKind::RunnerGone => Some("gone"),
        _ => None,
    };
    if let (Some(action), Some(runner_id)) = (runner_action, event.runner_id) {
        let Some(runner) = tx.runner_get(runner_id)? else { return Ok(None) };
        let body = json!({
            "action": action,
            "runner": {
                "id": runner.id.0,
                "name": runner.name,
                "labels": runner.labels,
                "pool": runner.pool,
                "ephemeral": runner.ephemeral,
                "state": runner.state.to_string(),
            },
            "baton": common,
        });
        return Ok(Some(("runner", body)));
    }
    Ok(None)
}
