//! The records of the one truth: runners, sessions, jobs and attempts.
//!
//! These are plain values. The store keeps them; the transaction scripts in `baton-store` load
//! them, ask this crate what follows, and write them back in one transaction.

use std::collections::BTreeMap;

use crate::{
    AttemptNo, AttemptResult, AttemptState, JobConclusion, JobId, JobState, LeaseEpoch, RunId, RunnerId, RunnerState,
    SessionId, SessionState, Timestamp,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub id: RunnerId,
    /// Unique among runners that are not gone.
    pub name: String,
    /// Sorted, lower-case, without duplicates.
    pub labels: Vec<String>,
    pub pool: String,
    /// Jobs run at once on this runner. An ephemeral runner runs exactly one job in its life.
    pub capacity: u32,
    pub ephemeral: bool,
    pub state: RunnerState,
    /// Slots the runner said were free in its latest poll. The server lowers it on every offer
    /// and only the runner raises it again, after the previous worker has been reaped.
    pub reported_free_slots: u32,
    /// The open session, if any.
    pub session_id: Option<SessionId>,
    /// SHA-256 of the runner credential, hex; `None` until a JIT-created runner registers.
    pub credential_hash: Option<String>,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub runner_id: RunnerId,
    pub state: SessionState,
    pub opened_at: Timestamp,
    /// The session expires when this passes without a poll or a renewal.
    pub expires_at: Timestamp,
}

impl Session {
    /// Open and not past its expiry at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.state == SessionState::Open && now <= self.expires_at
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub name: String,
    /// The labels a runner must all carry to run this job. Sorted, lower-case.
    pub labels: Vec<String>,
    /// The job spec as submitted (JSON), opaque to the core.
    pub spec: String,
    pub state: JobState,
    pub conclusion: Option<JobConclusion>,
    /// Why the job concluded as it did, when the result alone does not say.
    pub reason: Option<String>,
    pub max_attempts: u32,
    /// The newest attempt.
    pub attempt: AttemptNo,
    /// The newest fencing epoch issued for any attempt of this job.
    pub epoch: LeaseEpoch,
    pub cancel_requested: bool,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// The workflow run this job is a leg of, if any.
    pub run_id: Option<RunId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub job_id: JobId,
    pub number: AttemptNo,
    pub state: AttemptState,
    /// The runner it is (or was last) offered to.
    pub runner_id: Option<RunnerId>,
    /// The epoch of its current (or last) offer.
    pub epoch: Option<LeaseEpoch>,
    pub queued_at: Timestamp,
    pub offered_at: Option<Timestamp>,
    pub accept_deadline: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub lease_deadline: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub result: Option<AttemptResult>,
    pub outputs: BTreeMap<String, String>,
    /// The step summary (Markdown) the attempt reported.
    pub summary: Option<String>,
    /// Why a lost or cancelled attempt ended.
    pub reason: Option<String>,
}

impl Job {
    /// A new job whose first attempt is about to be queued; its id is assigned on insert.
    pub fn queued(
        name: String,
        labels: Vec<String>,
        spec: String,
        max_attempts: u32,
        run_id: Option<RunId>,
        now: Timestamp,
    ) -> Job {
        Job {
            id: JobId(0),
            name,
            labels,
            spec,
            state: JobState::Queued,
            conclusion: None,
            reason: None,
            max_attempts,
            attempt: AttemptNo::FIRST,
            epoch: LeaseEpoch(0),
            cancel_requested: false,
            created_at: now,
            completed_at: None,
            run_id,
        }
    }
}

impl Attempt {
    /// A fresh queued attempt.
    pub fn queued(job_id: JobId, number: AttemptNo, now: Timestamp) -> Attempt {
        Attempt {
            job_id,
            number,
            state: AttemptState::Queued,
            runner_id: None,
            epoch: None,
            queued_at: now,
            offered_at: None,
            accept_deadline: None,
            started_at: None,
            lease_deadline: None,
            ended_at: None,
            result: None,
            outputs: BTreeMap::new(),
            summary: None,
            reason: None,
        }
    }

    /// Checks the facts that must hold of an attempt in each state. The store calls it before
    /// it writes a row and after it reads one; a violation is a bug in Baton, so it panics.
    pub fn check_invariants(&self) {
        match self.state {
            AttemptState::Queued => {
                assert!(self.ended_at.is_none(), "queued attempt has ended_at");
                assert!(self.lease_deadline.is_none(), "queued attempt has a lease");
            }
            AttemptState::Offered => {
                assert!(self.runner_id.is_some(), "offered attempt without runner");
                assert!(self.epoch.is_some(), "offered attempt without epoch");
                assert!(self.accept_deadline.is_some(), "offered attempt without accept deadline");
            }
            AttemptState::Running => {
                assert!(self.runner_id.is_some(), "running attempt without runner");
                assert!(self.epoch.is_some(), "running attempt without epoch");
                assert!(self.lease_deadline.is_some(), "running attempt without lease");
            }
            AttemptState::Completed => {
                assert!(self.result.is_some(), "completed attempt without result");
                assert!(self.ended_at.is_some(), "completed attempt without ended_at");
            }
            AttemptState::Lost => {
                assert!(self.result.is_none(), "lost attempt with a result");
                assert!(self.ended_at.is_some(), "lost attempt without ended_at");
            }
        }
    }
}

/// A message queued for a runner, delivered at least once by its polls until acknowledged.
/// Offers carry no secret: the job token is derived when the message is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    JobOffer { job_id: JobId, attempt: AttemptNo, epoch: LeaseEpoch },
    Cancel { job_id: JobId, attempt: AttemptNo, epoch: LeaseEpoch },
    Drain,
    Retire,
}

/// A registration token: lets runners register themselves, until it expires or is used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationToken {
    pub id: i64,
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// Labels every runner registered with it gets, besides its own.
    pub labels: Vec<String>,
    pub pool: String,
    pub expires_at: Timestamp,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub revoked: bool,
    pub created_at: Timestamp,
}

/// A single-use registration bound to a runner that was created with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitConfig {
    /// SHA-256 of the config's secret, hex.
    pub hash: String,
    pub runner_id: RunnerId,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// A workflow run. The planner's state is opaque JSON here; `baton-engine` owns its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    /// The workflow's `name:`, or its file name.
    pub name: String,
    pub file_name: String,
    /// The workflow text as submitted.
    pub workflow: String,
    /// The typed `inputs` context, JSON.
    pub inputs: String,
    /// The secrets by name, JSON; `None` once the run completed (they are kept no longer).
    pub secrets: Option<String>,
    /// Run options, JSON (`only`, `any_runner`).
    pub options: String,
    /// The planner's state, JSON.
    pub state: String,
    pub cancel_requested: bool,
    /// `success`, `failure` or `cancelled` once completed.
    pub conclusion: Option<String>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// A webhook endpoint. Deliveries are made from the events table: `cursor` is the newest event
/// already turned into deliveries for it, so the outbox is the event row itself, written in the
/// same transaction as the state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    /// Webhook event names it receives (`workflow_job`, `workflow_run`, `runner`); empty: all.
    pub events: Vec<String>,
    /// Signing secrets as JSON: `[{"secret": "whsec_...", "expires_at": ms or null}]`, newest first.
    pub secrets: String,
    /// Deliver one at a time, in event order (a failing delivery holds back the later ones).
    pub ordered: bool,
    pub cursor: crate::EventSeq,
    pub removed: bool,
    pub created_at: Timestamp,
}

/// One message to one endpoint, with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event_seq: crate::EventSeq,
    /// The Standard Webhooks `webhook-id`: the same for every attempt and redelivery.
    pub message_id: String,
    /// `workflow_job`, `workflow_run` or `runner`.
    pub event: String,
    /// The JSON body, frozen when the delivery was made.
    pub payload: String,
    /// `pending`, `delivered` or `failed` (gave up after the retry horizon).
    pub status: String,
    pub attempts: u32,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: Option<u64>,
    pub next_attempt_at: Timestamp,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}
