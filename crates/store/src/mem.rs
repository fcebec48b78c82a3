//! The in-memory backend: the same semantics as SQLite, for the simulator and fast tests.
//!
//! All rows live behind one mutex, so transactions are serial. A write transaction records how
//! to undo each change in a journal; when the script fails, the journal is replayed backwards
//! and nothing it wrote remains.

use std::collections::BTreeMap;
use std::sync::Mutex;

use baton_core::{
    Attempt, AttemptNo, AttemptState, Delivery, EventSeq, JitConfig, Job, JobId, Message, MessageId, RegistrationToken,
    Run, RunId, Runner, RunnerId, RunnerState, Session, SessionId, SessionState, Timestamp, Webhook,
};

use crate::StoreError;
use crate::tx::{Backend, Event, LogChunk, QueueCursor, Tx};

type R<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Default, Clone)]
struct State {
    meta: BTreeMap<String, String>,
    registration_tokens: BTreeMap<i64, RegistrationToken>,
    jits: BTreeMap<String, JitConfig>,
    runners: BTreeMap<RunnerId, Runner>,
    sessions: BTreeMap<SessionId, Session>,
    jobs: BTreeMap<JobId, Job>,
    runs: BTreeMap<RunId, Run>,
    webhooks: BTreeMap<i64, Webhook>,
    deliveries: BTreeMap<i64, Delivery>,
    attempts: BTreeMap<(JobId, AttemptNo), Attempt>,
    messages: BTreeMap<MessageId, (RunnerId, Message)>,
    logs: BTreeMap<(JobId, AttemptNo, u64), LogChunk>,
    events: BTreeMap<EventSeq, Event>,
    counters: Counters,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    registration_token: i64,
    runner: i64,
    session: i64,
    job: i64,
    run: i64,
    webhook: i64,
    delivery: i64,
    message: i64,
    event: i64,
}

/// How to undo one change.
enum Undo {
    Meta(String, Option<String>),
    RegistrationToken(i64, Option<RegistrationToken>),
    Jit(String, Option<JitConfig>),
    Runner(RunnerId, Option<Runner>),
    Session(SessionId, Option<Session>),
    Job(JobId, Option<Job>),
    Run(RunId, Option<Run>),
    Webhook(i64, Option<Webhook>),
    Delivery(i64, Option<Delivery>),
    Attempt((JobId, AttemptNo), Option<Attempt>),
    Message(MessageId, Option<(RunnerId, Message)>),
    Log((JobId, AttemptNo, u64), Option<LogChunk>),
    Event(EventSeq, Option<Event>),
    Counters(Counters),
}

fn restore<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, old: Option<V>) {
    match old {
        Some(value) => {
            map.insert(key, value);
        }
        None => {
            map.remove(&key);
        }
    }
}

impl State {
    fn undo(&mut self, change: Undo) {
        match change {
            Undo::Meta(key, old) => restore(&mut self.meta, key, old),
            Undo::RegistrationToken(key, old) => restore(&mut self.registration_tokens, key, old),
            Undo::Jit(key, old) => restore(&mut self.jits, key, old),
            Undo::Runner(key, old) => restore(&mut self.runners, key, old),
            Undo::Session(key, old) => restore(&mut self.sessions, key, old),
            Undo::Job(key, old) => restore(&mut self.jobs, key, old),
            Undo::Run(key, old) => restore(&mut self.runs, key, old),
            Undo::Webhook(key, old) => restore(&mut self.webhooks, key, old),
            Undo::Delivery(key, old) => restore(&mut self.deliveries, key, old),
            Undo::Attempt(key, old) => restore(&mut self.attempts, key, old),
            Undo::Message(key, old) => restore(&mut self.messages, key, old),
            Undo::Log(key, old) => restore(&mut self.logs, key, old),
            Undo::Event(key, old) => restore(&mut self.events, key, old),
            Undo::Counters(old) => self.counters = old,
        }
    }
}

/// The in-memory backend. Cloning the data out with [`MemBackend::snapshot`] and back with
/// [`MemBackend::from_snapshot`] models a server restart that keeps its store.
#[derive(Debug, Default)]
pub struct MemBackend {
    state: Mutex<State>,
}

/// The whole content of a memory store, for restarts in the simulator.
#[derive(Debug, Clone)]
pub struct MemSnapshot(State);

impl MemBackend {
    pub fn new() -> MemBackend {
        MemBackend::default()
    }

    pub fn snapshot(&self) -> MemSnapshot {
        MemSnapshot(self.lock().clone())
    }

    pub fn from_snapshot(snapshot: MemSnapshot) -> MemBackend {
        MemBackend { state: Mutex::new(snapshot.0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic inside a transaction is a broken invariant; the journal was not replayed, so
        // the data may be half-written. Refuse to go on with it.
        self.state.lock().expect("memory store poisoned by a panic inside a transaction")
    }
}

impl Backend for MemBackend {
    fn write(&self, body: &mut dyn FnMut(&mut dyn Tx) -> R<bool>) -> R<()> {
        let mut state = self.lock();
        let mut tx = MemTx { state: &mut state, journal: Some(Vec::new()) };
        let commit = body(&mut tx);
        let journal = tx.journal.take().unwrap_or_default();
        if !matches!(commit, Ok(true)) {
            for change in journal.into_iter().rev() {
                state.undo(change);
            }
        }
        commit.map(|_| ())
    }

    fn read(&self, body: &mut dyn FnMut(&mut dyn Tx) -> R<()>) -> R<()> {
        let mut state = self.lock();
        let mut tx = MemTx { state: &mut state, journal: None };
        body(&mut tx)
    }
}

struct MemTx<'a> {
    state: &'a mut State,
    /// `None` in a read transaction, where writes are refused.
    journal: Option<Vec<Undo>>,
}

impl MemTx<'_> {
    fn record(&mut self, change: Undo) -> R<()> {
        match &mut self.journal {
            Some(journal) => {
                journal.push(change);
                Ok(())
            }
            None => Err(StoreError::Corrupt("write attempted in a read-only transaction".into())),
        }
    }

    fn next_id(&mut self, pick: fn(&mut Counters) -> &mut i64) -> R<i64> {
        self.record(Undo::Counters(self.state.counters))?;
        let counter = pick(&mut self.state.counters);
        *counter += 1;
        Ok(*counter)
    }
}

impl MemTx<'_> {
    /// Refuses a credential that another runner already has, as SQLite's unique index on
    /// `runners.credential_hash` does: two runners with one credential would make every
    /// authenticated call ambiguous.
    fn check_credential_unused(&self, runner: &Runner, this_runner: Option<RunnerId>) -> R<()> {
        let Some(hash) = runner.credential_hash.as_deref() else { return Ok(()) };
        let taken = self
            .state
            .runners
            .values()
            .any(|other| Some(other.id) != this_runner && other.credential_hash.as_deref() == Some(hash));
        if taken {
            return Err(StoreError::Corrupt("duplicate runner credential hash".into()));
        }
        Ok(())
    }
}

fn missing(what: &str, id: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("update of {what} {id}, which does not exist"))
}

impl Tx for MemTx<'_> {
    fn meta_get(&mut self, key: &str) -> R<Option<String>> {
        Ok(self.state.meta.get(key).cloned())
    }

    fn meta_set(&mut self, key: &str, value: &str) -> R<()> {
        let old = self.state.meta.get(key).cloned();
        self.record(Undo::Meta(key.to_string(), old))?;
        self.state.meta.insert(key.to_string(), value.to_string());
        Ok(())
    }

    fn registration_token_insert(&mut self, token: &RegistrationToken) -> R<i64> {
        if self.state.registration_tokens.values().any(|other| other.hash == token.hash) {
            return Err(StoreError::Corrupt("duplicate registration token hash".into()));
        }
        let id = self.next_id(|counters| &mut counters.registration_token)?;
        self.record(Undo::RegistrationToken(id, None))?;
        self.state.registration_tokens.insert(id, RegistrationToken { id, ..token.clone() });
        Ok(id)
    }

    fn registration_token_by_hash(&mut self, hash: &str) -> R<Option<RegistrationToken>> {
        Ok(self.state.registration_tokens.values().find(|token| token.hash == hash).cloned())
    }

    fn registration_token_update(&mut self, token: &RegistrationToken) -> R<()> {
        let old = self.state.registration_tokens.get(&token.id).cloned().ok_or_else(|| missing("token", token.id))?;
        self.record(Undo::RegistrationToken(token.id, Some(old)))?;
        self.state.registration_tokens.insert(token.id, token.clone());
        Ok(())
    }

    fn jit_insert(&mut self, jit: &JitConfig) -> R<()> {
        if self.state.jits.contains_key(&jit.hash) {
            return Err(StoreError::Corrupt("duplicate JIT config hash".into()));
        }
        self.record(Undo::Jit(jit.hash.clone(), None))?;
        self.state.jits.insert(jit.hash.clone(), jit.clone());
        Ok(())
    }

    fn jit_by_hash(&mut self, hash: &str) -> R<Option<JitConfig>> {
        Ok(self.state.jits.get(hash).cloned())
    }

    fn jit_update(&mut self, jit: &JitConfig) -> R<()> {
        let old = self.state.jits.get(&jit.hash).cloned().ok_or_else(|| missing("jit", &jit.hash))?;
        self.record(Undo::Jit(jit.hash.clone(), Some(old)))?;
        self.state.jits.insert(jit.hash.clone(), jit.clone());
        Ok(())
    }

    fn runner_insert(&mut self, runner: &Runner) -> R<RunnerId> {
        self.check_credential_unused(runner, None)?;
        let id = RunnerId(self.next_id(|counters| &mut counters.runner)?);
        self.record(Undo::Runner(id, None))?;
        self.state.runners.insert(id, Runner { id, ..runner.clone() });
        Ok(id)
    }

    fn runner_update(&mut self, runner: &Runner) -> R<()> {
        let old = self.state.runners.get(&runner.id).cloned().ok_or_else(|| missing("runner", runner.id))?;
        self.check_credential_unused(runner, Some(runner.id))?;
        self.record(Undo::Runner(runner.id, Some(old)))?;
        self.state.runners.insert(runner.id, runner.clone());
        Ok(())
    }

    fn runner_get(&mut self, id: RunnerId) -> R<Option<Runner>> {
        Ok(self.state.runners.get(&id).cloned())
    }

    fn runner_by_credential(&mut self, hash: &str) -> R<Option<Runner>> {
        Ok(self.state.runners.values().find(|runner| runner.credential_hash.as_deref() == Some(hash)).cloned())
    }

    fn runner_by_name(&mut self, name: &str) -> R<Option<Runner>> {
        Ok(self.state.runners.values().find(|runner| runner.name == name && runner.state != RunnerState::Gone).cloned())
    }

    fn runners_named(&mut self, name: &str) -> R<Vec<Runner>> {
        Ok(self.state.runners.values().filter(|runner| runner.name == name).cloned().collect())
    }

    fn runners_page(&mut self, after: RunnerId, limit: usize) -> R<Vec<Runner>> {
        Ok(self.state.runners.range(RunnerId(after.0 + 1)..).take(limit).map(|(_, runner)| runner.clone()).collect())
    }

    fn runners_of_pool(&mut self, pool: &str) -> R<Vec<Runner>> {
        Ok(self
            .state
            .runners
            .values()
            .filter(|runner| runner.pool == pool && runner.state != RunnerState::Gone)
            .cloned()
            .collect())
    }

    fn runner_activity(&mut self, runner_id: RunnerId) -> R<(u32, Option<Timestamp>)> {
        let attempts = self.state.attempts.values().filter(|attempt| attempt.runner_id == Some(runner_id));
        let (count, last) = attempts.fold((0u32, None), |(count, last): (u32, Option<Timestamp>), attempt| {
            (count.saturating_add(1), last.max(attempt.ended_at))
        });
        Ok((count, last))
    }

    fn runners_with_reported_slots(&mut self) -> R<Vec<Runner>> {
        Ok(self
            .state
            .runners
            .values()
            .filter(|runner| runner.state == RunnerState::Active && runner.reported_free_slots > 0)
            .cloned()
            .collect())
    }

    fn session_insert(&mut self, session: &Session) -> R<SessionId> {
        let id = SessionId(self.next_id(|counters| &mut counters.session)?);
        self.record(Undo::Session(id, None))?;
        self.state.sessions.insert(id, Session { id, ..session.clone() });
        Ok(id)
    }

    fn session_update(&mut self, session: &Session) -> R<()> {
        let old = self.state.sessions.get(&session.id).cloned().ok_or_else(|| missing("session", session.id))?;
        self.record(Undo::Session(session.id, Some(old)))?;
        self.state.sessions.insert(session.id, session.clone());
        Ok(())
    }

    fn session_get(&mut self, id: SessionId) -> R<Option<Session>> {
        Ok(self.state.sessions.get(&id).cloned())
    }

    fn sessions_expired(&mut self, now: Timestamp) -> R<Vec<Session>> {
        Ok(self
            .state
            .sessions
            .values()
            .filter(|session| session.state == SessionState::Open && session.expires_at < now)
            .cloned()
            .collect())
    }

    fn sessions_open(&mut self) -> R<Vec<Session>> {
        Ok(self.state.sessions.values().filter(|session| session.state == SessionState::Open).cloned().collect())
    }

    fn job_insert(&mut self, job: &Job) -> R<JobId> {
        let id = JobId(self.next_id(|counters| &mut counters.job)?);
        self.record(Undo::Job(id, None))?;
        self.state.jobs.insert(id, Job { id, ..job.clone() });
        Ok(id)
    }

    fn job_update(&mut self, job: &Job) -> R<()> {
        let old = self.state.jobs.get(&job.id).cloned().ok_or_else(|| missing("job", job.id))?;
        self.record(Undo::Job(job.id, Some(old)))?;
        self.state.jobs.insert(job.id, job.clone());
        Ok(())
    }

    fn job_get(&mut self, id: JobId) -> R<Option<Job>> {
        Ok(self.state.jobs.get(&id).cloned())
    }

    fn jobs_page(&mut self, after: JobId, limit: usize) -> R<Vec<Job>> {
        Ok(self.state.jobs.range(JobId(after.0 + 1)..).take(limit).map(|(_, job)| job.clone()).collect())
    }

    fn webhook_insert(&mut self, webhook: &Webhook) -> R<i64> {
        let id = self.next_id(|counters| &mut counters.webhook)?;
        self.record(Undo::Webhook(id, None))?;
        self.state.webhooks.insert(id, Webhook { id, ..webhook.clone() });
        Ok(id)
    }

    fn webhook_update(&mut self, webhook: &Webhook) -> R<()> {
        let old = self.state.webhooks.get(&webhook.id).cloned().ok_or_else(|| missing("webhook", webhook.id))?;
        self.record(Undo::Webhook(webhook.id, Some(old.clone())))?;
        self.state.webhooks.insert(webhook.id, Webhook { created_at: old.created_at, ..webhook.clone() });
        Ok(())
    }

    fn webhook_get(&mut self, id: i64) -> R<Option<Webhook>> {
        Ok(self.state.webhooks.get(&id).cloned())
    }

    fn webhooks_active(&mut self) -> R<Vec<Webhook>> {
        Ok(self.state.webhooks.values().filter(|webhook| !webhook.removed).cloned().collect())
    }

    fn delivery_insert(&mut self, delivery: &Delivery) -> R<i64> {
        let id = self.next_id(|counters| &mut counters.delivery)?;
        self.record(Undo::Delivery(id, None))?;
        self.state.deliveries.insert(id, Delivery { id, ..delivery.clone() });
        Ok(id)
    }

    fn delivery_update(&mut self, delivery: &Delivery) -> R<()> {
        let old = self.state.deliveries.get(&delivery.id).cloned().ok_or_else(|| missing("delivery", delivery.id))?;
        let updated = Delivery {
            status: delivery.status.clone(),
            attempts: delivery.attempts,
            response_code: delivery.response_code,
            error: delivery.error.clone(),
            latency_ms: delivery.latency_ms,
            next_attempt_at: delivery.next_attempt_at,
            completed_at: delivery.completed_at,
            ..old.clone()
        };
        self.record(Undo::Delivery(delivery.id, Some(old)))?;
        self.state.deliveries.insert(delivery.id, updated);
        Ok(())
    }

    fn delivery_get(&mut self, id: i64) -> R<Option<Delivery>> {
        Ok(self.state.deliveries.get(&id).cloned())
    }

    fn deliveries_of(&mut self, webhook_id: i64, after: i64, limit: usize) -> R<Vec<Delivery>> {
        Ok(self
            .state
            .deliveries
            .range(after.saturating_add(1)..)
            .map(|(_, delivery)| delivery)
            .filter(|delivery| delivery.webhook_id == webhook_id)
            .take(limit)
            .cloned()
            .collect())
    }

    fn deliveries_pending(&mut self, webhook_id: i64, limit: usize) -> R<Vec<Delivery>> {
        Ok(self
            .state
            .deliveries
            .values()
            .filter(|delivery| delivery.webhook_id == webhook_id && delivery.status == "pending")
            .take(limit)
            .cloned()
            .collect())
    }

    fn queue_depth_by_labels(&mut self, limit: usize) -> R<Vec<(Vec<String>, u64)>> {
        let mut depth: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for attempt in self.state.attempts.values().filter(|attempt| attempt.state == AttemptState::Queued) {
            if let Some(job) = self.state.jobs.get(&attempt.job_id) {
                *depth.entry(job.labels.clone()).or_default() += 1;
            }
        }
        let mut out: Vec<(Vec<String>, u64)> = depth.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }

    fn runner_counts(&mut self) -> R<Vec<(String, u64)>> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for runner in self.state.runners.values() {
            *counts.entry(runner.state.to_string()).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    fn run_insert(&mut self, run: &Run) -> R<RunId> {
        let id = RunId(self.next_id(|counters| &mut counters.run)?);
        self.record(Undo::Run(id, None))?;
        self.state.runs.insert(id, Run { id, ..run.clone() });
        Ok(id)
    }

    fn run_update(&mut self, run: &Run) -> R<()> {
        let old = self.state.runs.get(&run.id).cloned().ok_or_else(|| missing("run", run.id))?;
        // Only the columns SQLite updates change; the rest are fixed at insert.
        let updated = Run {
            secrets: run.secrets.clone(),
            state: run.state.clone(),
            cancel_requested: run.cancel_requested,
            conclusion: run.conclusion.clone(),
            completed_at: run.completed_at,
            ..old.clone()
        };
        self.record(Undo::Run(run.id, Some(old)))?;
        self.state.runs.insert(run.id, updated);
        Ok(())
    }

    fn run_get(&mut self, id: RunId) -> R<Option<Run>> {
        Ok(self.state.runs.get(&id).cloned())
    }

    fn runs_page(&mut self, before: RunId, limit: usize) -> R<Vec<Run>> {
        Ok(self.state.runs.range(..before).rev().take(limit).map(|(_, run)| run.clone()).collect())
    }

    fn attempt_insert(&mut self, attempt: &Attempt) -> R<()> {
        let key = (attempt.job_id, attempt.number);
        if self.state.attempts.contains_key(&key) {
            return Err(StoreError::Corrupt(format!("duplicate attempt {}/{}", key.0, key.1)));
        }
        self.record(Undo::Attempt(key, None))?;
        self.state.attempts.insert(key, attempt.clone());
        Ok(())
    }

    fn attempt_update(&mut self, attempt: &Attempt) -> R<()> {
        let key = (attempt.job_id, attempt.number);
        let old = self.state.attempts.get(&key).cloned().ok_or_else(|| missing("attempt", key.0))?;
        self.record(Undo::Attempt(key, Some(old)))?;
        self.state.attempts.insert(key, attempt.clone());
        Ok(())
    }

    fn attempt_get(&mut self, job_id: JobId, number: AttemptNo) -> R<Option<Attempt>> {
        Ok(self.state.attempts.get(&(job_id, number)).cloned())
    }

    fn attempts_of_job(&mut self, job_id: JobId) -> R<Vec<Attempt>> {
        Ok(self
            .state
            .attempts
            .range((job_id, AttemptNo(0))..=(job_id, AttemptNo(u32::MAX)))
            .map(|(_, attempt)| attempt.clone())
            .collect())
    }

    fn attempts_queued(&mut self, after: Option<QueueCursor>, limit: usize) -> R<Vec<(Attempt, Vec<String>)>> {
        let key = |attempt: &Attempt| QueueCursor {
            queued_at: attempt.queued_at,
            job_id: attempt.job_id,
            number: attempt.number,
        };
        let mut queued: Vec<&Attempt> = self
            .state
            .attempts
            .values()
            .filter(|attempt| attempt.state == AttemptState::Queued && after.is_none_or(|after| key(attempt) > after))
            .collect();
        queued.sort_by_key(|attempt| key(attempt));
        queued
            .into_iter()
            .take(limit)
            .map(|attempt| {
                let job = self.state.jobs.get(&attempt.job_id).ok_or_else(|| missing("job", attempt.job_id))?;
                Ok((attempt.clone(), job.labels.clone()))
            })
            .collect()
    }

    fn attempts_held(&mut self, runner_id: RunnerId) -> R<Vec<Attempt>> {
        Ok(self
            .state
            .attempts
            .values()
            .filter(|attempt| attempt.state.holds_runner() && attempt.runner_id == Some(runner_id))
            .cloned()
            .collect())
    }

    fn attempts_offer_expired(&mut self, now: Timestamp) -> R<Vec<Attempt>> {
        Ok(self
            .state
            .attempts
            .values()
            .filter(|attempt| {
                attempt.state == AttemptState::Offered && attempt.accept_deadline.is_some_and(|due| due < now)
            })
            .cloned()
            .collect())
    }

    fn attempts_lease_expired(&mut self, now: Timestamp) -> R<Vec<Attempt>> {
        Ok(self
            .state
            .attempts
            .values()
            .filter(|attempt| {
                attempt.state == AttemptState::Running && attempt.lease_deadline.is_some_and(|due| due < now)
            })
            .cloned()
            .collect())
    }

    fn attempts_live(&mut self) -> R<Vec<Attempt>> {
        Ok(self.state.attempts.values().filter(|attempt| attempt.state.holds_runner()).cloned().collect())
    }

    fn message_insert(&mut self, runner_id: RunnerId, message: &Message, _now: Timestamp) -> R<MessageId> {
        let id = MessageId(self.next_id(|counters| &mut counters.message)?);
        self.record(Undo::Message(id, None))?;
        self.state.messages.insert(id, (runner_id, *message));
        Ok(id)
    }

    fn messages_after(&mut self, runner_id: RunnerId, after: MessageId, limit: usize) -> R<Vec<(MessageId, Message)>> {
        Ok(self
            .state
            .messages
            .range(MessageId(after.0 + 1)..)
            .filter(|(_, (owner, _))| *owner == runner_id)
            .take(limit)
            .map(|(id, (_, message))| (*id, *message))
            .collect())
    }

    fn messages_delete_upto(&mut self, runner_id: RunnerId, upto: MessageId) -> R<()> {
        let doomed: Vec<MessageId> = self
            .state
            .messages
            .range(..=upto)
            .filter(|(_, (owner, _))| *owner == runner_id)
            .map(|(id, _)| *id)
            .collect();
        for id in doomed {
            self.message_delete(id)?;
        }
        Ok(())
    }

    fn message_delete(&mut self, id: MessageId) -> R<()> {
        if let Some(old) = self.state.messages.get(&id).copied() {
            self.record(Undo::Message(id, Some(old)))?;
            self.state.messages.remove(&id);
        }
        Ok(())
    }

    fn log_last_seq(&mut self, job_id: JobId, attempt: AttemptNo) -> R<u64> {
        Ok(self
            .state
            .logs
            .range((job_id, attempt, 0)..=(job_id, attempt, u64::MAX))
            .next_back()
            .map(|((_, _, seq), _)| *seq)
            .unwrap_or(0))
    }

    fn log_get(&mut self, job_id: JobId, attempt: AttemptNo, seq: u64) -> R<Option<LogChunk>> {
        Ok(self.state.logs.get(&(job_id, attempt, seq)).cloned())
    }

    fn log_insert(&mut self, job_id: JobId, attempt: AttemptNo, chunk: &LogChunk) -> R<()> {
        let key = (job_id, attempt, chunk.seq);
        if self.state.logs.contains_key(&key) {
            return Err(StoreError::Corrupt(format!("duplicate log chunk {job_id}/{attempt}/{}", chunk.seq)));
        }
        self.record(Undo::Log(key, None))?;
        self.state.logs.insert(key, chunk.clone());
        Ok(())
    }

    fn logs_after(&mut self, job_id: JobId, attempt: AttemptNo, after: u64, limit: usize) -> R<Vec<LogChunk>> {
        Ok(self
            .state
            .logs
            .range((job_id, attempt, after.saturating_add(1))..=(job_id, attempt, u64::MAX))
            .take(limit)
            .map(|(_, chunk)| chunk.clone())
            .collect())
    }

    fn event_insert(&mut self, event: &Event) -> R<EventSeq> {
        let seq = EventSeq(self.next_id(|counters| &mut counters.event)?);
        self.record(Undo::Event(seq, None))?;
        self.state.events.insert(seq, Event { seq, ..event.clone() });
        Ok(seq)
    }

    fn events_after(&mut self, after: EventSeq, limit: usize) -> R<Vec<Event>> {
        Ok(self.state.events.range(EventSeq(after.0 + 1)..).take(limit).map(|(_, event)| event.clone()).collect())
    }

    fn event_last_seq(&mut self) -> R<EventSeq> {
        Ok(self.state.events.keys().next_back().copied().unwrap_or_default())
    }
}
