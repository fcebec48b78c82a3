//! What an autoscaler reads and records: one consistent snapshot of a pool's demand and
//! runners, retire-if-idle with its audit event in the same transaction, and the audit events
//! of its other decisions.

use baton_core::{Attempt, EventKind, EventSeq, Runner, RunnerId, Timestamp, dispatch};

use crate::error::{Error, Result};
use crate::ops::{RetireOutcome, Store, emit, get_runner, retire_in_tx};

/// Queued attempts one snapshot lists, at most.
pub const SNAPSHOT_QUEUED_MAX: usize = 10_000;

/// A pool as the scaler sees it, read in one snapshot.
#[derive(Debug, Clone)]
pub struct PoolSnapshot {
    /// The newest event the snapshot includes.
    pub as_of: EventSeq,
    /// Queued attempts (oldest first) with their job's labels, every pool's.
    pub queued: Vec<(Attempt, Vec<String>)>,
    /// The pool's runners that are not gone.
    pub runners: Vec<PoolRunner>,
}

#[derive(Debug, Clone)]
pub struct PoolRunner {
    pub runner: Runner,
    /// Offered or running attempts that reference it.
    pub held: u32,
    /// Attempts ever offered to it.
    pub attempts: u32,
    /// The runner holds nothing and has held nothing since this instant.
    pub idle_since: Option<Timestamp>,
    /// Its session is open and not expired.
    pub online: bool,
}

/// The kinds of scaler decisions recorded with [`Store::record_scaler_event`].
pub const SCALER_EVENT_KINDS: [EventKind; 3] =
    [EventKind::ScalerCreate, EventKind::ScalerTerminate, EventKind::ScalerCleanup];

impl Store {
    pub fn pool_snapshot(&self, pool: &str, now: Timestamp) -> Result<PoolSnapshot> {
        self.read(|tx| {
            let as_of = tx.event_last_seq()?;
            let queued = tx.attempts_queued(None, SNAPSHOT_QUEUED_MAX)?;
            let mut runners = Vec::new();
            for runner in tx.runners_of_pool(pool)? {
                let held = u32::try_from(tx.attempts_held(runner.id)?.len()).unwrap_or(u32::MAX);
                let (attempts, last_end) = tx.runner_activity(runner.id)?;
                let online = match runner.session_id {
                    Some(id) => tx.session_get(id)?.is_some_and(|session| session.is_live(now)),
                    None => false,
                };
                let idle_since = (!dispatch::is_busy(held))
                    .then(|| last_end.map_or(runner.created_at, |end| end.max(runner.created_at)));
                runners.push(PoolRunner { runner, held, attempts, idle_since, online });
            }
            Ok(PoolSnapshot { as_of, queued, runners })
        })
    }

    /// Retire-if-idle for an autoscaler: the same atomic decision as [`Store::retire_if_idle`],
    /// plus a `scaler.retire` event with the answer and the readings that justified the attempt,
    /// in the same transaction.
    pub fn scaler_retire(
        &self,
        runner_id: RunnerId,
        readings: &serde_json::Value,
        now: Timestamp,
    ) -> Result<RetireOutcome> {
        self.write(|tx, fx| {
            let outcome = retire_in_tx(tx, fx, runner_id, now)?;
            let answer = match outcome {
                RetireOutcome::Retired => serde_json::json!({ "answer": "retired" }),
                RetireOutcome::Busy { job_id, attempt } => {
                    serde_json::json!({ "answer": "busy", "job_id": job_id.0, "attempt": attempt.0 })
                }
            };
            emit(
                tx,
                fx,
                now,
                EventKind::ScalerRetire,
                None,
                None,
                Some(runner_id),
                serde_json::json!({ "result": answer, "readings": readings }),
            )?;
            Ok(outcome)
        })
    }

    /// Retire-if-idle by runner name, for a machine the scaler wants to terminate without
    /// knowing its runner: the live runner of that name is retired exactly as
    /// [`Store::scaler_retire`] does; when no live runner has the name, nothing can run on the
    /// machine and the answer is `Retired`. Either way a `scaler.retire` event records it.
    pub fn scaler_retire_name(
        &self,
        name: &str,
        readings: &serde_json::Value,
        now: Timestamp,
    ) -> Result<RetireOutcome> {
        self.write(|tx, fx| {
            let runner = tx.runner_by_name(name)?;
            let outcome = match &runner {
                Some(runner) => retire_in_tx(tx, fx, runner.id, now)?,
                // A runner that said goodbye after fencing a job is gone, but its attempt stays
                // running until its lease expires: the machine is not idle until then.
                None => held_by_gone(tx, name)?.unwrap_or(RetireOutcome::Retired),
            };
            let answer = match outcome {
                RetireOutcome::Retired => {
                    serde_json::json!({ "answer": "retired", "name": name, "runner": runner.is_some() })
                }
                RetireOutcome::Busy { job_id, attempt } => {
                    serde_json::json!({ "answer": "busy", "name": name, "job_id": job_id.0, "attempt": attempt.0 })
                }
            };
            emit(
                tx,
                fx,
                now,
                EventKind::ScalerRetire,
                None,
                None,
                runner.map(|runner| runner.id),
                serde_json::json!({ "result": answer, "readings": readings }),
            )?;
            Ok(outcome)
        })
    }

    /// Records a scaler decision (create, terminate, clean-up) with its readings.
    pub fn record_scaler_event(
        &self,
        kind: EventKind,
        runner_id: Option<RunnerId>,
        data: &serde_json::Value,
        now: Timestamp,
    ) -> Result<EventSeq> {
        if !SCALER_EVENT_KINDS.contains(&kind) {
            return Err(Error::Invalid { field: "kind", message: format!("{kind} is not a scaler decision") });
        }
        if !data.is_object() {
            return Err(Error::Invalid { field: "data", message: "must be a JSON object".into() });
        }
        self.write(|tx, fx| {
            if let Some(runner_id) = runner_id {
                get_runner(tx, runner_id)?;
            }
            emit(tx, fx, now, kind, None, None, runner_id, data.clone())
        })
    }
}

/// The first attempt still held by a gone runner of this name, as a `Busy` answer.
fn held_by_gone(tx: &mut dyn crate::Tx, name: &str) -> Result<Option<RetireOutcome>> {
    for runner in tx.runners_named(name)? {
        if let Some(held) = tx.attempts_held(runner.id)?.first() {
            return Ok(Some(RetireOutcome::Busy { job_id: held.job_id, attempt: held.number }));
        }
    }
    Ok(None)
}
