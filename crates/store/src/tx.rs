//! The row-level interface every backend implements.
//!
//! A [`Tx`] is one open transaction. Reads inside a write transaction see the transaction's own
//! writes; a backend must make write transactions serializable (SQLite: `BEGIN IMMEDIATE`, one
//! writer). Ids of new rows are assigned by the backend and returned by the insert.

use baton_core::{
    Attempt, AttemptNo, Delivery, EventKind, EventSeq, JitConfig, Job, JobId, Message, MessageId, RegistrationToken,
    Run, RunId, Runner, RunnerId, Session, SessionId, Timestamp, Webhook,
};

use crate::StoreError;

type R<T> = std::result::Result<T, StoreError>;

/// One row of the events table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: EventSeq,
    pub at: Timestamp,
    pub kind: EventKind,
    pub job_id: Option<JobId>,
    pub attempt: Option<AttemptNo>,
    pub runner_id: Option<RunnerId>,
    /// Details as a JSON object.
    pub data: String,
}

/// A position in the queue: queued attempts are ordered by (queued_at, job_id, number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueCursor {
    pub queued_at: Timestamp,
    pub job_id: JobId,
    pub number: AttemptNo,
}

/// One stored chunk of an attempt's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub seq: u64,
    pub at: Timestamp,
    pub data: String,
}

pub trait Tx {
    fn meta_get(&mut self, key: &str) -> R<Option<String>>;
    fn meta_set(&mut self, key: &str, value: &str) -> R<()>;

    fn registration_token_insert(&mut self, token: &RegistrationToken) -> R<i64>;
    fn registration_token_by_hash(&mut self, hash: &str) -> R<Option<RegistrationToken>>;
    fn registration_token_update(&mut self, token: &RegistrationToken) -> R<()>;

    fn jit_insert(&mut self, jit: &JitConfig) -> R<()>;
    fn jit_by_hash(&mut self, hash: &str) -> R<Option<JitConfig>>;
    fn jit_update(&mut self, jit: &JitConfig) -> R<()>;

    /// Inserts a runner; its `id` field is ignored and the new id returned.
    fn runner_insert(&mut self, runner: &Runner) -> R<RunnerId>;
    fn runner_update(&mut self, runner: &Runner) -> R<()>;
    fn runner_get(&mut self, id: RunnerId) -> R<Option<Runner>>;
    fn runner_by_credential(&mut self, hash: &str) -> R<Option<Runner>>;
    /// The runner with this name that is not gone, if any.
    fn runner_by_name(&mut self, name: &str) -> R<Option<Runner>>;
    /// Every runner that ever had `name`, gone ones included, by id.
    fn runners_named(&mut self, name: &str) -> R<Vec<Runner>>;
    /// Runners with id greater than `after`, by id, at most `limit`.
    fn runners_page(&mut self, after: RunnerId, limit: usize) -> R<Vec<Runner>>;
    /// Runners of `pool` that are not gone, by id.
    fn runners_of_pool(&mut self, pool: &str) -> R<Vec<Runner>>;
    /// How many attempts were ever offered to the runner, and when the last one ended.
    fn runner_activity(&mut self, runner_id: RunnerId) -> R<(u32, Option<Timestamp>)>;
    /// Active runners whose last report left free slots.
    fn runners_with_reported_slots(&mut self) -> R<Vec<Runner>>;

    fn session_insert(&mut self, session: &Session) -> R<SessionId>;
    fn session_update(&mut self, session: &Session) -> R<()>;
    fn session_get(&mut self, id: SessionId) -> R<Option<Session>>;
    /// Open sessions whose expiry is before `now`.
    fn sessions_expired(&mut self, now: Timestamp) -> R<Vec<Session>>;
    fn sessions_open(&mut self) -> R<Vec<Session>>;

    fn job_insert(&mut self, job: &Job) -> R<JobId>;
    fn job_update(&mut self, job: &Job) -> R<()>;
    fn job_get(&mut self, id: JobId) -> R<Option<Job>>;
    /// Jobs with id greater than `after`, by id, at most `limit`.
    fn jobs_page(&mut self, after: JobId, limit: usize) -> R<Vec<Job>>;

    /// Inserts a run; its `id` field is ignored and the new id returned.
    fn run_insert(&mut self, run: &Run) -> R<RunId>;
    fn run_update(&mut self, run: &Run) -> R<()>;
    fn run_get(&mut self, id: RunId) -> R<Option<Run>>;
    /// Runs with id less than `before`, newest first, at most `limit`.
    fn runs_page(&mut self, before: RunId, limit: usize) -> R<Vec<Run>>;

    fn attempt_insert(&mut self, attempt: &Attempt) -> R<()>;
    fn attempt_update(&mut self, attempt: &Attempt) -> R<()>;
    fn attempt_get(&mut self, job_id: JobId, number: AttemptNo) -> R<Option<Attempt>>;
    fn attempts_of_job(&mut self, job_id: JobId) -> R<Vec<Attempt>>;
    /// Queued attempts in queue order (queued_at, job, number) after `after`, each with its
    /// job's labels; at most `limit`.
    fn attempts_queued(&mut self, after: Option<QueueCursor>, limit: usize) -> R<Vec<(Attempt, Vec<String>)>>;
    /// Offered and running attempts that reference `runner_id`.
    fn attempts_held(&mut self, runner_id: RunnerId) -> R<Vec<Attempt>>;
    /// Offered attempts whose accept deadline is before `now`.
    fn attempts_offer_expired(&mut self, now: Timestamp) -> R<Vec<Attempt>>;
    /// Running attempts whose lease deadline is before `now`.
    fn attempts_lease_expired(&mut self, now: Timestamp) -> R<Vec<Attempt>>;
    /// All offered and running attempts.
    fn attempts_live(&mut self) -> R<Vec<Attempt>>;

    fn message_insert(&mut self, runner_id: RunnerId, message: &Message, now: Timestamp) -> R<MessageId>;
    /// Messages for `runner_id` with id greater than `after`, oldest first, at most `limit`.
    fn messages_after(&mut self, runner_id: RunnerId, after: MessageId, limit: usize) -> R<Vec<(MessageId, Message)>>;
    /// Deletes the messages for `runner_id` with id up to and including `upto`.
    fn messages_delete_upto(&mut self, runner_id: RunnerId, upto: MessageId) -> R<()>;
    fn message_delete(&mut self, id: MessageId) -> R<()>;

    /// The highest stored sequence number of an attempt's log, 0 when there is none.
    fn log_last_seq(&mut self, job_id: JobId, attempt: AttemptNo) -> R<u64>;
    fn log_get(&mut self, job_id: JobId, attempt: AttemptNo, seq: u64) -> R<Option<LogChunk>>;
    fn log_insert(&mut self, job_id: JobId, attempt: AttemptNo, chunk: &LogChunk) -> R<()>;
    /// Chunks with sequence greater than `after`, in order, at most `limit`.
    fn logs_after(&mut self, job_id: JobId, attempt: AttemptNo, after: u64, limit: usize) -> R<Vec<LogChunk>>;

    /// Inserts a webhook endpoint; its `id` is ignored and the new id returned.
    fn webhook_insert(&mut self, webhook: &Webhook) -> R<i64>;
    fn webhook_update(&mut self, webhook: &Webhook) -> R<()>;
    fn webhook_get(&mut self, id: i64) -> R<Option<Webhook>>;
    /// Endpoints not removed, by id.
    fn webhooks_active(&mut self) -> R<Vec<Webhook>>;
    /// Inserts a delivery; its `id` is ignored and the new id returned.
    fn delivery_insert(&mut self, delivery: &Delivery) -> R<i64>;
    fn delivery_update(&mut self, delivery: &Delivery) -> R<()>;
    fn delivery_get(&mut self, id: i64) -> R<Option<Delivery>>;
    /// An endpoint's deliveries with id greater than `after`, by id, at most `limit`.
    fn deliveries_of(&mut self, webhook_id: i64, after: i64, limit: usize) -> R<Vec<Delivery>>;
    /// An endpoint's pending deliveries, oldest first, at most `limit`.
    fn deliveries_pending(&mut self, webhook_id: i64, limit: usize) -> R<Vec<Delivery>>;

    /// Queued attempts counted by their job's label set, the largest groups first, at most `limit` groups.
    fn queue_depth_by_labels(&mut self, limit: usize) -> R<Vec<(Vec<String>, u64)>>;
    /// Runners counted by state.
    fn runner_counts(&mut self) -> R<Vec<(String, u64)>>;

    /// Appends an event; its `seq` field is ignored and the new sequence returned.
    fn event_insert(&mut self, event: &Event) -> R<EventSeq>;
    fn events_after(&mut self, after: EventSeq, limit: usize) -> R<Vec<Event>>;
    /// The newest event's sequence, 0 when there is none.
    fn event_last_seq(&mut self) -> R<EventSeq>;

    /// Tells the other processes serving the same database what this transaction did, when
    /// (and only if) it commits. Backends that only one process writes to have no one to tell.
    fn announce(&mut self, _effects: &crate::Effects) -> R<()> {
        Ok(())
    }
}

/// A storage backend: runs closures as transactions.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Runs `body` in one serializable read-write transaction, committing when it returns
    /// `Ok(true)` and rolling back when it returns `Ok(false)` or an error. Nothing `body` wrote
    /// is visible to anyone unless the commit succeeded.
    fn write(&self, body: &mut dyn FnMut(&mut dyn Tx) -> R<bool>) -> R<()>;

    /// Runs `body` in one read-only transaction that sees a consistent snapshot.
    fn read(&self, body: &mut dyn FnMut(&mut dyn Tx) -> R<()>) -> R<()>;

    /// Starts telling `observer` about the commits of other processes serving the same
    /// database (what their transactions [`Tx::announce`]d). Backends that only one process
    /// writes to have nothing to tell.
    fn watch_others(&self, _observer: std::sync::Arc<dyn crate::CommitObserver>) {}

    /// Whether a short write started now would run at once, without waiting for another
    /// write, the network or an fsync. Callers on an async runtime use it to skip a hop to a
    /// blocking thread; a wrong `true` costs one short wait, so it need only be a good guess.
    fn writes_at_once(&self) -> bool {
        false
    }
}

/// A shared backend is a backend: the simulator keeps its memory store across the restarts of
/// the servers it opens over it.
impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn write(&self, body: &mut dyn FnMut(&mut dyn Tx) -> R<bool>) -> R<()> {
        (**self).write(body)
    }

    fn read(&self, body: &mut dyn FnMut(&mut dyn Tx) -> R<()>) -> R<()> {
        (**self).read(body)
    }

    fn watch_others(&self, observer: std::sync::Arc<dyn crate::CommitObserver>) {
        (**self).watch_others(observer)
    }

    fn writes_at_once(&self) -> bool {
        (**self).writes_at_once()
    }
}
