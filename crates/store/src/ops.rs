//! The transaction scripts: every decision that matters, each ONE transaction.
//!
//! Each public method of [`Store`] loads the rows it needs through [`Tx`], asks `baton-core`
//! what follows, writes the result and appends its events, all inside one backend transaction.
//! A script that returns an error has written nothing. After a commit, the [`CommitObserver`]
//! learns which runners were sent messages and whether events were appended, so the server can
//! wake long-polls and event streams without polling the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use baton_core::{
    Attempt, AttemptEvent, AttemptNo, AttemptResult, AttemptState, EventKind, EventSeq, JitConfig, Job, JobConclusion,
    JobEvent, JobId, JobState, LeaseEpoch, Message, MessageId, RegistrationToken, Runner, RunnerEvent, RunnerId,
    RunnerState, Session, SessionEvent, SessionId, SessionState, Timeouts, Timestamp, dispatch, lease, limits,
};

use crate::error::{Error, Result};
use crate::tx::{Backend, Event, LogChunk, QueueCursor, Tx};

/// What a committed transaction did that someone may be waiting for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Runners that have new messages.
    pub messaged: Vec<RunnerId>,
    /// The kinds of the events appended, in order.
    pub events: Vec<EventKind>,
    /// Runners that became gone: their credentials are revoked.
    pub gone: Vec<RunnerId>,
    /// For each offer made: how long its attempt waited queued.
    pub dispatch_waits: Vec<Duration>,
    /// For each job completed: how long it took from enqueue to completion.
    pub job_durations: Vec<Duration>,
}

impl Effects {
    fn message(&mut self, runner_id: RunnerId) {
        if !self.messaged.contains(&runner_id) {
            self.messaged.push(runner_id);
        }
    }
}

/// What another process serving the same database committed, as far as anyone here may be
/// waiting for it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wake {
    /// Runners that have new messages.
    pub messaged: Vec<RunnerId>,
    /// Runners that became gone.
    pub gone: Vec<RunnerId>,
    /// Events were appended.
    pub events: bool,
    /// Anything may have changed (the lists did not fit, or notifications were missed while
    /// the watch reconnected): wake every runner and forget cached credentials.
    pub everything: bool,
}

impl Wake {
    /// The part of a commit's effects other processes act on.
    pub fn of(effects: &Effects) -> Wake {
        Wake {
            messaged: effects.messaged.clone(),
            gone: effects.gone.clone(),
            events: !effects.events.is_empty(),
            everything: false,
        }
    }

    /// Nothing to tell.
    pub fn is_empty(&self) -> bool {
        self.messaged.is_empty() && self.gone.is_empty() && !self.events && !self.everything
    }
}

/// Told about every commit that had effects.
pub trait CommitObserver: Send + Sync {
    fn committed(&self, effects: &Effects);

    /// Told about commits of other processes serving the same database (replicas on
    /// PostgreSQL); never called for a database only this process serves.
    fn committed_elsewhere(&self, _wake: &Wake) {}
}

/// The store: a backend, the protocol timeouts, and an observer of commits.
pub struct Store {
    backend: Box<dyn Backend>,
    timeouts: Timeouts,
    observer: Option<Arc<dyn CommitObserver>>,
    /// Parsed workflows of runs, so a leg's completion does not parse its workflow again.
    pub(crate) workflows: crate::runs::WorkflowCache,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).field("timeouts", &self.timeouts).finish()
    }
}

/// A new runner registering with a registration token.
#[derive(Debug, Clone)]
pub struct NewRunner {
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: u32,
    pub ephemeral: bool,
}

/// A new runner created ahead of its machine, with a single-use JIT config.
#[derive(Debug, Clone)]
pub struct NewJitRunner {
    pub name: String,
    pub labels: Vec<String>,
    pub pool: String,
    pub capacity: u32,
    pub ephemeral: bool,
    pub jit_hash: String,
    pub expires_at: Timestamp,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub name: String,
    pub labels: Vec<String>,
    pub spec: String,
    pub max_attempts: u32,
}

/// The answer to a poll: the messages waiting for the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    pub messages: Vec<(MessageId, Message)>,
    /// The jobs the offers among `messages` are for, read in the same transaction.
    pub offered_jobs: Vec<Job>,
    /// The secrets of the runs those jobs belong to, by job.
    pub secrets: BTreeMap<JobId, BTreeMap<String, String>>,
}

/// A runner as served by the API: with what it holds, read in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerView {
    pub runner: Runner,
    pub session: Option<Session>,
    /// Offered and running attempts that reference it; `busy` is `!held.is_empty()`.
    pub held: Vec<Attempt>,
    /// The newest event visible in the snapshot this view was read from.
    pub as_of: EventSeq,
}

impl RunnerView {
    pub fn busy(&self) -> bool {
        dispatch::is_busy(u32::try_from(self.held.len()).unwrap_or(u32::MAX))
    }
}

/// Fleet gauges for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct FleetGauges {
    /// Queued attempts by their job's label set.
    pub queue: Vec<(Vec<String>, u64)>,
    /// Runners by state.
    pub runners: Vec<(String, u64)>,
}

/// A job with all its attempts, read in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    pub job: Job,
    pub attempts: Vec<Attempt>,
}

/// The answer of retire-if-idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireOutcome {
    /// The runner is retiring (or already gone): it will never be offered a job again, and its
    /// machine may be terminated.
    Retired,
    /// An offered or running attempt references the runner; nothing changed.
    Busy { job_id: JobId, attempt: AttemptNo },
}

/// The answer to an accept or renew: the lease the runner now holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub deadline: Timestamp,
    pub ttl: Duration,
    /// The job was cancelled: the runner should stop it and complete it as cancelled.
    pub cancel_requested: bool,
}

/// The answer to a log upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogAppend {
    Appended,
    /// The chunk was already stored (a retry); nothing changed.
    Duplicate,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub expired: usize,
}

/// Queued attempts considered by one dispatch pass, at most.
const DISPATCH_SCAN_MAX: usize = 1000;
/// Queued attempts read at a time by a dispatch pass.
const DISPATCH_PAGE: usize = 32;

/// Meta key of the instant the control plane last recorded itself alive.
const META_LAST_ALIVE: &str = "clock.last_alive";

impl Store {
    pub fn new(backend: Box<dyn Backend>, timeouts: Timeouts) -> Store {
        Store { backend, timeouts, observer: None, workflows: Default::default() }
    }

    pub fn open_memory(timeouts: Timeouts) -> Store {
        Store::new(Box::new(crate::mem::MemBackend::new()), timeouts)
    }

    /// Sets who is told about commits: this process's own, and (on a database several
    /// processes serve) the others'.
    pub fn set_observer(&mut self, observer: Arc<dyn CommitObserver>) {
        self.backend.watch_others(observer.clone());
        self.observer = Some(observer);
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Whether a short script started now would run without waiting (see
    /// [`Backend::writes_at_once`]).
    pub fn writes_at_once(&self) -> bool {
        self.backend.writes_at_once()
    }

    /// Runs `script` as one write transaction. A script error rolls back everything it wrote.
    pub(crate) fn write<T>(&self, mut script: impl FnMut(&mut dyn Tx, &mut Effects) -> Result<T>) -> Result<T> {
        let mut outcome: Option<Result<T>> = None;
        let mut effects = Effects::default();
        self.backend.write(&mut |tx| {
            effects = Effects::default();
            match script(tx, &mut effects) {
                Ok(value) => {
                    if !effects.messaged.is_empty() || !effects.events.is_empty() || !effects.gone.is_empty() {
                        tx.announce(&effects)?;
                    }
                    outcome = Some(Ok(value));
                    Ok(true)
                }
                Err(Error::Store(error)) => Err(error),
                Err(error) => {
                    outcome = Some(Err(error));
                    Ok(false)
                }
            }
        })?;
        let outcome = outcome.expect("a committed or rolled back write ran its script");
        if outcome.is_ok()
            && (!effects.events.is_empty() || !effects.messaged.is_empty() || !effects.dispatch_waits.is_empty())
            && let Some(observer) = &self.observer
        {
            observer.committed(&effects);
        }
        outcome
    }

    pub(crate) fn read<T>(&self, mut script: impl FnMut(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let mut outcome: Option<Result<T>> = None;
        self.backend.read(&mut |tx| {
            match script(tx) {
                Err(Error::Store(error)) => return Err(error),
                other => outcome = Some(other),
            }
            Ok(())
        })?;
        outcome.expect("a read ran its script")
    }

    // ----- meta -----

    pub fn meta_get(&self, key: &str) -> Result<Option<String>> {
        self.read(|tx| Ok(tx.meta_get(key)?))
    }

    /// Stores `value` under `key` unless a value is there already; returns the stored value.
    pub fn meta_get_or_insert(&self, key: &str, value: &str) -> Result<String> {
        self.write(|tx, _| match tx.meta_get(key)? {
            Some(existing) => Ok(existing),
            None => {
                tx.meta_set(key, value)?;
                Ok(value.to_string())
            }
        })
    }

    pub fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        self.write(|tx, _| Ok(tx.meta_set(key, value)?))
    }

    // ----- registration -----

    pub fn create_registration_token(
        &self,
        hash: &str,
        labels: &[String],
        pool: &str,
        expires_at: Timestamp,
        max_uses: Option<u32>,
        now: Timestamp,
    ) -> Result<RegistrationToken> {
        check_labels(labels)?;
        check_name_field("pool", pool)?;
        self.write(|tx, _| {
            let mut token = RegistrationToken {
                id: 0,
                hash: hash.to_string(),
                labels: dispatch::normalize_labels(labels),
                pool: pool.to_string(),
                expires_at,
                max_uses,
                uses: 0,
                revoked: false,
                created_at: now,
            };
            token.id = tx.registration_token_insert(&token)?;
            Ok(token)
        })
    }

    /// Registers a runner with a registration token.
    pub fn register_runner(
        &self,
        token_hash: &str,
        new: &NewRunner,
        credential_hash: &str,
        now: Timestamp,
    ) -> Result<Runner> {
        check_new_runner(&new.name, &new.labels, new.capacity)?;
        self.write(|tx, fx| {
            let Some(mut token) = tx.registration_token_by_hash(token_hash)? else {
                return Err(Error::Unauthorized("unknown registration token".into()));
            };
            if token.revoked {
                return Err(Error::Unauthorized("the registration token was revoked".into()));
            }
            if lease::is_past(token.expires_at, now) {
                return Err(Error::Unauthorized(format!("the registration token expired at {}", token.expires_at)));
            }
            if token.max_uses.is_some_and(|max| token.uses >= max) {
                return Err(Error::Unauthorized("the registration token has been used up".into()));
            }
            token.uses += 1;
            tx.registration_token_update(&token)?;
            let mut labels = new.labels.clone();
            labels.extend(token.labels.iter().cloned());
            let runner = insert_runner(
                tx,
                fx,
                RunnerSpec {
                    name: &new.name,
                    labels: &labels,
                    pool: &token.pool,
                    capacity: new.capacity,
                    ephemeral: new.ephemeral,
                    credential_hash: Some(credential_hash),
                },
                now,
            )?;
            Ok(runner)
        })
    }

    /// Creates a runner ahead of its machine, with a single-use JIT config.
    pub fn create_jit_runner(&self, new: &NewJitRunner, now: Timestamp) -> Result<Runner> {
        check_new_runner(&new.name, &new.labels, new.capacity)?;
        check_name_field("pool", &new.pool)?;
        self.write(|tx, fx| {
            let runner = insert_runner(
                tx,
                fx,
                RunnerSpec {
                    name: &new.name,
                    labels: &new.labels,
                    pool: &new.pool,
                    capacity: new.capacity,
                    ephemeral: new.ephemeral,
                    credential_hash: None,
                },
                now,
            )?;
            tx.jit_insert(&JitConfig {
                hash: new.jit_hash.clone(),
                runner_id: runner.id,
                expires_at: new.expires_at,
                used_at: None,
                created_at: now,
            })?;
            Ok(runner)
        })
    }

    /// Redeems a JIT config: binds the credential to its runner. A config works once.
    pub fn register_jit(&self, jit_hash: &str, credential_hash: &str, now: Timestamp) -> Result<Runner> {
        self.write(|tx, _| {
            let Some(mut jit) = tx.jit_by_hash(jit_hash)? else {
                return Err(Error::Unauthorized("unknown JIT config".into()));
            };
            if jit.used_at.is_some() {
                return Err(Error::Unauthorized(
                    "the JIT config was already used; each JIT config registers one runner once".into(),
                ));
            }
            if lease::is_past(jit.expires_at, now) {
                return Err(Error::Unauthorized(format!("the JIT config expired at {}", jit.expires_at)));
            }
            let mut runner = get_runner(tx, jit.runner_id)?;
            if runner.state != RunnerState::Registered || runner.credential_hash.is_some() {
                return Err(Error::Unauthorized(format!(
                    "runner {} of this JIT config is {}",
                    runner.id, runner.state
                )));
            }
            jit.used_at = Some(now);
            tx.jit_update(&jit)?;
            runner.credential_hash = Some(credential_hash.to_string());
            runner.last_seen_at = now;
            tx.runner_update(&runner)?;
            Ok(runner)
        })
    }

    /// The runner a credential belongs to; `None` when it is unknown.
    pub fn runner_by_credential(&self, credential_hash: &str) -> Result<Option<Runner>> {
        self.read(|tx| Ok(tx.runner_by_credential(credential_hash)?))
    }

    // ----- sessions and polls -----

    /// Opens a session for the runner, replacing any session it had.
    pub fn open_session(&self, runner_id: RunnerId, now: Timestamp) -> Result<Session> {
        self.write(|tx, fx| {
            let mut runner = get_runner(tx, runner_id)?;
            if matches!(runner.state, RunnerState::Retiring | RunnerState::Gone) {
                return Err(Error::Conflict {
                    code: "runner_retired",
                    message: format!("runner {runner_id} is {} and cannot open a session", runner.state),
                    hint: Some("this runner was retired; stop it, or register a new runner".into()),
                });
            }
            if let Some(old_id) = runner.session_id
                && let Some(mut old) = tx.session_get(old_id)?
                && old.state == SessionState::Open
            {
                old.state = old.state.on(SessionEvent::Replace)?;
                tx.session_update(&old)?;
            }
            let mut session = Session {
                id: SessionId(0),
                runner_id,
                state: SessionState::Open,
                opened_at: now,
                expires_at: now.plus(self.timeouts.session_ttl),
            };
            session.id = tx.session_insert(&session)?;
            let before = runner.state;
            runner.state = runner.state.on(RunnerEvent::SessionOpen)?;
            runner.session_id = Some(session.id);
            // Nothing is offered until the runner's first poll says what it can start.
            runner.reported_free_slots = 0;
            runner.last_seen_at = now;
            tx.runner_update(&runner)?;
            let kind =
                if before == RunnerState::Draining { EventKind::RunnerDraining } else { EventKind::RunnerOnline };
            emit(tx, fx, now, kind, None, None, Some(runner_id), serde_json::json!({ "session_id": session.id.0 }))?;
            Ok(session)
        })
    }

    /// One poll: keeps the session alive, records the runner's free slots, drops acknowledged
    /// messages, offers queued jobs to the runner, and returns what is waiting for it.
    pub fn poll(
        &self,
        runner_id: RunnerId,
        session_id: SessionId,
        free_slots: u32,
        ack: MessageId,
        now: Timestamp,
    ) -> Result<Polled> {
        self.write(|tx, fx| {
            let mut runner = get_runner(tx, runner_id)?;
            let mut session = live_session(tx, &runner, session_id, now)?;
            session.state = session.state.on(SessionEvent::Touch)?;
            session.expires_at = now.plus(self.timeouts.session_ttl);
            tx.session_update(&session)?;
            runner.reported_free_slots = free_slots.min(runner.capacity);
            runner.last_seen_at = now;
            tx.runner_update(&runner)?;
            if ack.0 > 0 {
                tx.messages_delete_upto(runner_id, ack)?;
            }
            assign(tx, fx, &self.timeouts, Some(runner), now)?;
            let messages = pending_messages(tx, runner_id, ack, Revoked::Delete)?;
            polled(tx, messages)
        })
    }

    /// Polls again after a wake-up, in a read-only transaction: what the first [`Store::poll`]
    /// of a long-poll recorded (the session's touch, the free slots, the ack) still holds, and
    /// whatever wakes a poll (an offer, a cancel) committed its message before the wake. The
    /// session must still be open.
    pub fn repoll(&self, runner_id: RunnerId, session_id: SessionId, ack: MessageId, now: Timestamp) -> Result<Polled> {
        self.read(|tx| {
            let runner = get_runner(tx, runner_id)?;
            live_session(tx, &runner, session_id, now)?;
            let messages = pending_messages(tx, runner_id, ack, Revoked::Skip)?;
            polled(tx, messages)
        })
    }

    /// Says goodbye: closes the session. An ephemeral or retiring runner is then gone; a
    /// persistent one is offline until it opens a new session. A repeated goodbye is a no-op
    /// success, so a runner may retry it. Attempts are not touched.
    pub fn goodbye(&self, runner_id: RunnerId, session_id: SessionId, now: Timestamp) -> Result<Runner> {
        self.write(|tx, fx| {
            let mut runner = get_runner(tx, runner_id)?;
            let Some(mut session) = tx.session_get(session_id)? else {
                return Err(not_found("session", session_id));
            };
            if session.runner_id != runner_id {
                return Err(Error::Forbidden(format!("session {session_id} belongs to another runner")));
            }
            if session.state != SessionState::Open {
                return Ok(runner);
            }
            session.state = session.state.on(SessionEvent::Goodbye)?;
            tx.session_update(&session)?;
            if runner.session_id == Some(session_id) {
                runner.session_id = None;
                let event = if runner.ephemeral || runner.state == RunnerState::Retiring {
                    RunnerEvent::Leave
                } else {
                    RunnerEvent::Goodbye
                };
                let before = runner.state;
                runner.state = runner.state.on(event)?;
                runner.last_seen_at = now;
                tx.runner_update(&runner)?;
                if runner.state != before {
                    let kind = if runner.state == RunnerState::Gone {
                        EventKind::RunnerGone
                    } else {
                        EventKind::RunnerOffline
                    };
                    emit(tx, fx, now, kind, None, None, Some(runner_id), serde_json::json!({ "reason": "goodbye" }))?;
                }
            }
            Ok(runner)
        })
    }

    // ----- jobs -----

    /// Enqueues a job and offers it at once if a runner can take it. Answers with the job as
    /// committed, offer included, so the caller needs no second read.
    pub fn enqueue(&self, new: &NewJob, now: Timestamp) -> Result<JobView> {
        check_name_field("name", &new.name)?;
        check_labels(&new.labels)?;
        if new.max_attempts == 0 || new.max_attempts > limits::MAX_ATTEMPTS_MAX {
            return Err(Error::Invalid {
                field: "max_attempts",
                message: format!("must be 1 to {}", limits::MAX_ATTEMPTS_MAX),
            });
        }
        self.write(|tx, fx| {
            let mut job = Job::queued(
                new.name.clone(),
                dispatch::normalize_labels(&new.labels),
                new.spec.clone(),
                new.max_attempts,
                None,
                now,
            );
            job.id = tx.job_insert(&job)?;
            let attempt = Attempt::queued(job.id, AttemptNo::FIRST, now);
            attempt.check_invariants();
            tx.attempt_insert(&attempt)?;
            emit(
                tx,
                fx,
                now,
                EventKind::JobQueued,
                Some(job.id),
                Some(AttemptNo::FIRST),
                None,
                serde_json::json!({ "labels": job.labels }),
            )?;
            assign(tx, fx, &self.timeouts, None, now)?;
            let job = get_job(tx, job.id)?;
            let attempts = tx.attempts_of_job(job.id)?;
            Ok(JobView { job, attempts })
        })
    }

    /// Offers queued jobs to every runner that can take them.
    pub fn dispatch(&self, now: Timestamp) -> Result<usize> {
        self.write(|tx, fx| assign(tx, fx, &self.timeouts, None, now))
    }

    /// Accepts an offer: the attempt starts running under a lease. Accepting the same offer
    /// again is a no-op success.
    pub fn accept(
        &self,
        runner_id: RunnerId,
        job_id: JobId,
        number: AttemptNo,
        epoch: LeaseEpoch,
        now: Timestamp,
    ) -> Result<Lease> {
        self.write(|tx, fx| {
            let mut attempt = fenced_attempt(tx, runner_id, job_id, number, epoch)?;
            let mut job = get_job(tx, job_id)?;
            match attempt.state {
                AttemptState::Running => {
                    return Ok(Lease {
                        deadline: attempt.lease_deadline.expect("running attempt has a lease"),
                        ttl: self.timeouts.lease_ttl,
                        cancel_requested: job.cancel_requested,
                    });
                }
                AttemptState::Offered => {}
                other => return Err(stale(job_id, number, epoch, format!("the attempt is {other}"))),
            }
            attempt.state = attempt.state.on(AttemptEvent::Accept)?;
            attempt.started_at = Some(now);
            attempt.accept_deadline = None;
            let deadline = lease::deadline(now, self.timeouts.lease_ttl);
            attempt.lease_deadline = Some(deadline);
            attempt.check_invariants();
            tx.attempt_update(&attempt)?;
            job.state = job.state.on(JobEvent::Start)?;
            tx.job_update(&job)?;
            emit(
                tx,
                fx,
                now,
                EventKind::JobStarted,
                Some(job_id),
                Some(number),
                Some(runner_id),
                serde_json::json!({ "epoch": epoch.0 }),
            )?;
            let mut runner = get_runner(tx, runner_id)?;
            if runner.ephemeral && runner.state == RunnerState::Active {
                // An ephemeral runner runs one job in its life.
                runner.state = runner.state.on(RunnerEvent::Drain)?;
                tx.runner_update(&runner)?;
                emit(
                    tx,
                    fx,
                    now,
                    EventKind::RunnerDraining,
                    None,
                    None,
                    Some(runner_id),
                    serde_json::json!({ "reason": "ephemeral" }),
                )?;
            }
            Ok(Lease { deadline, ttl: self.timeouts.lease_ttl, cancel_requested: job.cancel_requested })
        })
    }

    /// Renews the lease of a running attempt, and keeps the runner's session alive.
    pub fn renew(
        &self,
        runner_id: RunnerId,
        job_id: JobId,
        number: AttemptNo,
        epoch: LeaseEpoch,
        now: Timestamp,
    ) -> Result<Lease> {
        self.write(|tx, _| {
            let mut attempt = fenced_attempt(tx, runner_id, job_id, number, epoch)?;
            if attempt.state != AttemptState::Running {
                return Err(stale(job_id, number, epoch, format!("the attempt is {}", attempt.state)));
            }
            attempt.state = attempt.state.on(AttemptEvent::Renew)?;
            let deadline = lease::deadline(now, self.timeouts.lease_ttl);
            attempt.lease_deadline = Some(deadline);
            tx.attempt_update(&attempt)?;
            let runner = get_runner(tx, runner_id)?;
            if let Some(session_id) = runner.session_id
                && let Some(mut session) = tx.session_get(session_id)?
                && session.is_live(now)
            {
                session.expires_at = now.plus(self.timeouts.session_ttl);
                tx.session_update(&session)?;
            }
            let job = get_job(tx, job_id)?;
            Ok(Lease { deadline, ttl: self.timeouts.lease_ttl, cancel_requested: job.cancel_requested })
        })
    }

    /// Stores one chunk of a running attempt's log. Chunks are numbered from 1 without gaps; a
    /// chunk already stored is acknowledged again without change.
    #[expect(clippy::too_many_arguments, reason = "the fence is four ids; see Store::complete")]
    pub fn append_log(
        &self,
        runner_id: RunnerId,
        job_id: JobId,
        number: AttemptNo,
        epoch: LeaseEpoch,
        seq: u64,
        data: &str,
        now: Timestamp,
    ) -> Result<LogAppend> {
        if data.len() > limits::LOG_CHUNK_BYTES_MAX {
            return Err(Error::Invalid {
                field: "data",
                message: format!("a log chunk holds at most {} bytes", limits::LOG_CHUNK_BYTES_MAX),
            });
        }
        if seq == 0 {
            return Err(Error::Invalid { field: "seq", message: "log chunks are numbered from 1".into() });
        }
        self.write(|tx, _| {
            let attempt = fenced_attempt(tx, runner_id, job_id, number, epoch)?;
            if attempt.state != AttemptState::Running {
                return Err(stale(job_id, number, epoch, format!("the attempt is {}", attempt.state)));
            }
            // Secrets are masked on the runner; the server masks them again before storing.
            let run_id = get_job(tx, job_id)?.run_id;
            let data = crate::runs::redact(tx, run_id, data)?;
            let last = tx.log_last_seq(job_id, number)?;
            if seq <= last {
                let stored = tx.log_get(job_id, number, seq)?;
                return match stored {
                    Some(chunk) if chunk.data == data => Ok(LogAppend::Duplicate),
                    _ => Err(Error::Conflict {
                        code: "log_conflict",
                        message: format!("log chunk {seq} was already stored with different content"),
                        hint: Some("a chunk's content must not change between retries".into()),
                    }),
                };
            }
            if seq != last + 1 {
                return Err(Error::Conflict {
                    code: "log_gap",
                    message: format!("log chunk {seq} arrived but chunk {} is next", last + 1),
                    hint: Some(format!("upload chunk {} first", last + 1)),
                });
            }
            tx.log_insert(job_id, number, &LogChunk { seq, at: now, data })?;
            Ok(LogAppend::Appended)
        })
    }

    /// Completes a running attempt with its result. Answers after commit; completing again
    /// with the same result is a no-op success, so a runner may retry until acknowledged.
    #[expect(clippy::too_many_arguments, reason = "a fenced call names runner, job, attempt and epoch")]
    pub fn complete(
        &self,
        runner_id: RunnerId,
        job_id: JobId,
        number: AttemptNo,
        epoch: LeaseEpoch,
        result: AttemptResult,
        outputs: &BTreeMap<String, String>,
        summary: &str,
        now: Timestamp,
    ) -> Result<JobView> {
        check_outputs(outputs)?;
        if summary.len() > limits::SUMMARY_BYTES_MAX {
            return Err(Error::Invalid {
                field: "summary",
                message: format!("at most {} bytes", limits::SUMMARY_BYTES_MAX),
            });
        }
        self.write(|tx, fx| {
            let mut attempt = fenced_attempt(tx, runner_id, job_id, number, epoch)?;
            match attempt.state {
                AttemptState::Completed if attempt.result == Some(result) => {
                    let job = get_job(tx, job_id)?;
                    let attempts = tx.attempts_of_job(job_id)?;
                    return Ok(JobView { job, attempts });
                }
                AttemptState::Completed => {
                    return Err(Error::Conflict {
                        code: "already_completed",
                        message: format!(
                            "job {job_id} attempt {number} already completed with result {}",
                            attempt.result.map(|result| result.to_string()).unwrap_or_default()
                        ),
                        hint: None,
                    });
                }
                AttemptState::Running => {}
                other => return Err(stale(job_id, number, epoch, format!("the attempt is {other}"))),
            }
            let run_id = get_job(tx, job_id)?.run_id;
            let mut redacted = BTreeMap::new();
            for (name, value) in outputs {
                redacted.insert(name.clone(), crate::runs::redact(tx, run_id, value)?);
            }
            let summary = crate::runs::redact(tx, run_id, summary)?;
            attempt.state = attempt.state.on(AttemptEvent::Complete)?;
            attempt.result = Some(result);
            attempt.outputs = redacted.clone();
            attempt.summary = (!summary.is_empty()).then_some(summary);
            attempt.ended_at = Some(now);
            attempt.check_invariants();
            tx.attempt_update(&attempt)?;
            let mut job = get_job(tx, job_id)?;
            job.state = job.state.on(JobEvent::Finish)?;
            let conclusion = JobConclusion::from_result(result);
            job.conclusion = Some(conclusion);
            job.completed_at = Some(now);
            tx.job_update(&job)?;
            emit(
                tx,
                fx,
                now,
                EventKind::JobCompleted,
                Some(job_id),
                Some(number),
                Some(runner_id),
                serde_json::json!({ "conclusion": conclusion.to_string(), "epoch": epoch.0 }),
            )?;
            crate::runs::after_job_finished(self, tx, fx, &job, &redacted, now)?;
            let attempts = tx.attempts_of_job(job_id)?;
            Ok(JobView { job, attempts })
        })
    }

    /// Cancels a job. A queued or offered attempt ends at once; a running one is told to stop
    /// and completes as cancelled when its runner reports so (or is lost). Cancelling a job that
    /// was already cancelled is a no-op success.
    pub fn cancel_job(&self, job_id: JobId, now: Timestamp) -> Result<Job> {
        self.write(|tx, fx| {
            let job = cancel_in_tx(tx, fx, job_id, now)?;
            if job.state == JobState::Completed {
                crate::runs::after_job_finished(self, tx, fx, &job, &BTreeMap::new(), now)?;
            }
            Ok(job)
        })
    }

    // ----- runner lifecycle -----

    /// Retire-if-idle: in ONE transaction, either the runner holds no offered or running attempt
    /// and becomes `retiring` (never offered anything again), or nothing changes and the answer
    /// names the job it holds. A gone runner answers `Retired`.
    pub fn retire_if_idle(&self, runner_id: RunnerId, now: Timestamp) -> Result<RetireOutcome> {
        self.write(|tx, fx| retire_in_tx(tx, fx, runner_id, now))
    }

    /// Stops new offers to a runner; it finishes what it runs.
    pub fn drain(&self, runner_id: RunnerId, now: Timestamp) -> Result<Runner> {
        self.write(|tx, fx| {
            let mut runner = get_runner(tx, runner_id)?;
            runner.state = runner.state.on(RunnerEvent::Drain)?;
            tx.runner_update(&runner)?;
            if runner.session_id.is_some() {
                send(tx, fx, runner_id, &Message::Drain, now)?;
            }
            emit(
                tx,
                fx,
                now,
                EventKind::RunnerDraining,
                None,
                None,
                Some(runner_id),
                serde_json::json!({ "reason": "operator" }),
            )?;
            Ok(runner)
        })
    }

    /// Lifts a drain.
    pub fn resume(&self, runner_id: RunnerId, now: Timestamp) -> Result<Runner> {
        self.write(|tx, fx| {
            let mut runner = get_runner(tx, runner_id)?;
            if runner.ephemeral {
                // An ephemeral runner drains when it accepts its one job; resuming it would
                // hand it a second one.
                return Err(Error::Conflict {
                    code: "ephemeral_runner",
                    message: format!(
                        "runner {runner_id} is ephemeral and runs one job in its life; it cannot be resumed"
                    ),
                    hint: Some("retire it and start a new runner".into()),
                });
            }
            runner.state = runner.state.on(RunnerEvent::Resume)?;
            tx.runner_update(&runner)?;
            emit(tx, fx, now, EventKind::RunnerResumed, None, None, Some(runner_id), serde_json::json!({}))?;
            Ok(runner)
        })
    }

    /// Marks a retiring runner gone once its machine was terminated.
    pub fn remove_runner(&self, runner_id: RunnerId, now: Timestamp) -> Result<Runner> {
        self.write(|tx, fx| {
            let mut runner = get_runner(tx, runner_id)?;
            if runner.state == RunnerState::Gone {
                return Ok(runner);
            }
            runner.state = runner.state.on(RunnerEvent::Remove)?;
            if let Some(session_id) = runner.session_id.take()
                && let Some(mut session) = tx.session_get(session_id)?
                && session.state == SessionState::Open
            {
                session.state = session.state.on(SessionEvent::Goodbye)?;
                tx.session_update(&session)?;
            }
            tx.runner_update(&runner)?;
            emit(
                tx,
                fx,
                now,
                EventKind::RunnerGone,
                None,
                None,
                Some(runner_id),
                serde_json::json!({ "reason": "removed" }),
            )?;
            Ok(runner)
        })
    }

    // ----- sweeps -----

    /// Revokes offers not accepted within the accept timeout; the attempts are queued again and
    /// offered anew with a new epoch.
    pub fn expire_offers(&self, now: Timestamp) -> Result<Sweep> {
        self.write(|tx, fx| {
            let expired = tx.attempts_offer_expired(now)?;
            for mut attempt in expired.iter().cloned() {
                let runner_id = attempt.runner_id.expect("offered attempt has a runner");
                let epoch = attempt.epoch.expect("offered attempt has an epoch");
                attempt.state = attempt.state.on(AttemptEvent::OfferTimeout)?;
                attempt.runner_id = None;
                attempt.epoch = None;
                attempt.offered_at = None;
                attempt.accept_deadline = None;
                attempt.check_invariants();
                tx.attempt_update(&attempt)?;
                give_back_slot(tx, runner_id)?;
                emit(
                    tx,
                    fx,
                    now,
                    EventKind::OfferExpired,
                    Some(attempt.job_id),
                    Some(attempt.number),
                    Some(runner_id),
                    serde_json::json!({ "epoch": epoch.0 }),
                )?;
            }
            if !expired.is_empty() {
                assign(tx, fx, &self.timeouts, None, now)?;
            }
            Ok(Sweep { expired: expired.len() })
        })
    }

    /// Marks running attempts whose lease passed as lost, and queues a new attempt for their job
    /// or concludes it. Completed attempts are never touched (F1).
    pub fn expire_leases(&self, now: Timestamp) -> Result<Sweep> {
        self.write(|tx, fx| {
            let expired = tx.attempts_lease_expired(now)?;
            for mut attempt in expired.iter().cloned() {
                let runner_id = attempt.runner_id.expect("running attempt has a runner");
                let deadline = attempt.lease_deadline.expect("running attempt has a lease");
                attempt.state = attempt.state.on(AttemptEvent::LeaseExpire)?;
                attempt.ended_at = Some(now);
                attempt.reason = Some(format!("lease expired at {deadline} without renewal"));
                attempt.check_invariants();
                tx.attempt_update(&attempt)?;
                emit(
                    tx,
                    fx,
                    now,
                    EventKind::AttemptLost,
                    Some(attempt.job_id),
                    Some(attempt.number),
                    Some(runner_id),
                    serde_json::json!({ "epoch": attempt.epoch.map(|epoch| epoch.0) }),
                )?;
                let mut job = get_job(tx, attempt.job_id)?;
                if !job.cancel_requested && attempt.number.0 < job.max_attempts {
                    job.state = job.state.on(JobEvent::Requeue)?;
                    job.attempt = attempt.number.next();
                    tx.job_update(&job)?;
                    let next = Attempt::queued(job.id, job.attempt, now);
                    tx.attempt_insert(&next)?;
                    emit(
                        tx,
                        fx,
                        now,
                        EventKind::JobRequeued,
                        Some(job.id),
                        Some(job.attempt),
                        None,
                        serde_json::json!({}),
                    )?;
                } else {
                    job.state = job.state.on(JobEvent::GiveUp)?;
                    let (conclusion, reason) = if job.cancel_requested {
                        (
                            JobConclusion::Cancelled,
                            "cancelled; the runner stopped renewing before it confirmed".to_string(),
                        )
                    } else {
                        (
                            JobConclusion::InfrastructureFailure,
                            format!("infrastructure: all {} attempts lost their lease", job.max_attempts),
                        )
                    };
                    job.conclusion = Some(conclusion);
                    job.reason = Some(reason.clone());
                    job.completed_at = Some(now);
                    tx.job_update(&job)?;
                    emit(
                        tx,
                        fx,
                        now,
                        EventKind::JobCompleted,
                        Some(job.id),
                        Some(attempt.number),
                        None,
                        serde_json::json!({ "conclusion": conclusion.to_string(), "reason": reason }),
                    )?;
                    crate::runs::after_job_finished(self, tx, fx, &job, &BTreeMap::new(), now)?;
                }
            }
            if !expired.is_empty() {
                assign(tx, fx, &self.timeouts, None, now)?;
            }
            Ok(Sweep { expired: expired.len() })
        })
    }

    /// Expires sessions past their ttl: their runners go offline. Attempts are not touched: a
    /// runner that vanished never changes a finished job (F1), and running attempts end only
    /// through their own lease.
    pub fn expire_sessions(&self, now: Timestamp) -> Result<Sweep> {
        self.write(|tx, fx| {
            let expired = tx.sessions_expired(now)?;
            for mut session in expired.iter().cloned() {
                session.state = session.state.on(SessionEvent::Expire)?;
                tx.session_update(&session)?;
                let mut runner = get_runner(tx, session.runner_id)?;
                if runner.session_id != Some(session.id) {
                    continue;
                }
                runner.session_id = None;
                runner.state = runner.state.on(RunnerEvent::SessionExpire)?;
                tx.runner_update(&runner)?;
                // Emitted even when the state stays (a draining or retiring runner keeps it):
                // losing the session is what the scaler's orphan clean-up watches for.
                emit(
                    tx,
                    fx,
                    now,
                    EventKind::RunnerOffline,
                    None,
                    None,
                    Some(runner.id),
                    serde_json::json!({ "reason": "session expired", "state": runner.state.to_string() }),
                )?;
            }
            Ok(Sweep { expired: expired.len() })
        })
    }

    /// Records that the control plane is alive at `now`. If it was away for longer than two
    /// ticks, every live deadline (offers, leases, sessions) moves forward by the outage, so
    /// runners get their full lease to renew instead of all expiring at once. Returns the
    /// outage, if there was one.
    pub fn mark_alive(&self, now: Timestamp, tick: Duration) -> Result<Option<Duration>> {
        self.write(|tx, fx| {
            let last = match tx.meta_get(META_LAST_ALIVE)? {
                Some(text) => Some(Timestamp(text.parse().map_err(|_| {
                    crate::StoreError::Corrupt(format!("meta {META_LAST_ALIVE} is not a number: {text:?}"))
                })?)),
                None => None,
            };
            // Never moved back: replicas' clocks differ a little, and one whose clock is behind
            // must not make the next tick of one ahead look like an outage.
            let alive = last.map_or(now, |last| last.max(now));
            tx.meta_set(META_LAST_ALIVE, &alive.0.to_string())?;
            let Some(gap) = last.and_then(|last| lease::outage(last, now, tick)) else {
                return Ok(None);
            };
            for mut attempt in tx.attempts_live()? {
                attempt.accept_deadline = attempt.accept_deadline.map(|due| lease::extend(due, gap));
                attempt.lease_deadline = attempt.lease_deadline.map(|due| lease::extend(due, gap));
                tx.attempt_update(&attempt)?;
            }
            for mut session in tx.sessions_open()? {
                session.expires_at = lease::extend(session.expires_at, gap);
                tx.session_update(&session)?;
            }
            let gap_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX);
            emit(tx, fx, now, EventKind::ServerOutage, None, None, None, serde_json::json!({ "outage_ms": gap_ms }))?;
            Ok(Some(gap))
        })
    }

    // ----- reads -----

    pub fn runner_view(&self, runner_id: RunnerId) -> Result<RunnerView> {
        self.read(|tx| {
            let runner = get_runner(tx, runner_id)?;
            view_runner(tx, runner)
        })
    }

    pub fn runners(&self, after: RunnerId, limit: usize) -> Result<Vec<RunnerView>> {
        let limit = limit.min(limits::PAGE_SIZE_MAX);
        self.read(|tx| {
            let runners = tx.runners_page(after, limit)?;
            runners.into_iter().map(|runner| view_runner(tx, runner)).collect()
        })
    }

    pub fn job_view(&self, job_id: JobId) -> Result<JobView> {
        self.read(|tx| {
            let job = get_job(tx, job_id)?;
            let attempts = tx.attempts_of_job(job_id)?;
            Ok(JobView { job, attempts })
        })
    }

    pub fn jobs(&self, after: JobId, limit: usize) -> Result<Vec<JobView>> {
        let limit = limit.min(limits::PAGE_SIZE_MAX);
        self.read(|tx| {
            let jobs = tx.jobs_page(after, limit)?;
            jobs.into_iter()
                .map(|job| {
                    let attempts = tx.attempts_of_job(job.id)?;
                    Ok(JobView { job, attempts })
                })
                .collect()
        })
    }

    /// Gauges for `/metrics`, read in one snapshot: queue depth by label set (the 50 largest
    /// groups) and runners by state.
    pub fn fleet_gauges(&self) -> Result<FleetGauges> {
        self.read(|tx| Ok(FleetGauges { queue: tx.queue_depth_by_labels(50)?, runners: tx.runner_counts()? }))
    }

    pub fn events_after(&self, after: EventSeq, limit: usize) -> Result<Vec<Event>> {
        let limit = limit.min(limits::PAGE_SIZE_MAX);
        self.read(|tx| Ok(tx.events_after(after, limit)?))
    }

    pub fn last_event_seq(&self) -> Result<EventSeq> {
        self.read(|tx| Ok(tx.event_last_seq()?))
    }

    pub fn logs(&self, job_id: JobId, number: AttemptNo, after: u64, limit: usize) -> Result<Vec<LogChunk>> {
        let limit = limit.min(limits::PAGE_SIZE_MAX);
        self.read(|tx| {
            get_attempt(tx, job_id, number)?;
            Ok(tx.logs_after(job_id, number, after, limit)?)
        })
    }

    /// The attempt a job call refers to, for the server's token check.
    pub fn attempt(&self, job_id: JobId, number: AttemptNo) -> Result<Attempt> {
        self.read(|tx| get_attempt(tx, job_id, number))
    }
}

// ----- shared steps of the scripts -----

struct RunnerSpec<'a> {
    name: &'a str,
    labels: &'a [String],
    pool: &'a str,
    capacity: u32,
    ephemeral: bool,
    credential_hash: Option<&'a str>,
}

fn insert_runner(tx: &mut dyn Tx, fx: &mut Effects, spec: RunnerSpec<'_>, now: Timestamp) -> Result<Runner> {
    if tx.runner_by_name(spec.name)?.is_some() {
        return Err(Error::Conflict {
            code: "name_taken",
            message: format!("a runner named {:?} is already registered", spec.name),
            hint: Some("choose another --name, or retire and remove the existing runner first".into()),
        });
    }
    let mut runner = Runner {
        id: RunnerId(0),
        name: spec.name.to_string(),
        labels: dispatch::normalize_labels(spec.labels),
        pool: spec.pool.to_string(),
        capacity: if spec.ephemeral { 1 } else { spec.capacity },
        ephemeral: spec.ephemeral,
        state: RunnerState::Registered,
        reported_free_slots: 0,
        session_id: None,
        credential_hash: spec.credential_hash.map(str::to_string),
        created_at: now,
        last_seen_at: now,
    };
    runner.id = tx.runner_insert(&runner)?;
    emit(
        tx,
        fx,
        now,
        EventKind::RunnerRegistered,
        None,
        None,
        Some(runner.id),
        serde_json::json!({ "name": runner.name, "labels": runner.labels, "pool": runner.pool, "ephemeral": runner.ephemeral }),
    )?;
    Ok(runner)
}

/// The assign step: pairs queued attempts with runners that are active, have a live session
/// and a free slot, and match the labels; writes each offer with a new fencing epoch and queues
/// the offer message. With `only` set, considers that runner alone (a poll).
pub(crate) fn assign(
    tx: &mut dyn Tx,
    fx: &mut Effects,
    timeouts: &Timeouts,
    only: Option<Runner>,
    now: Timestamp,
) -> Result<usize> {
    let runners = match only {
        Some(runner) => vec![runner],
        None => tx.runners_with_reported_slots()?,
    };
    let mut eligible = Vec::new();
    for runner in runners {
        if !runner.state.takes_offers() || runner.reported_free_slots == 0 {
            continue;
        }
        let Some(session_id) = runner.session_id else { continue };
        let live = tx.session_get(session_id)?.is_some_and(|session| session.is_live(now));
        if !live {
            continue;
        }
        let held = u32::try_from(tx.attempts_held(runner.id)?.len()).unwrap_or(u32::MAX);
        let free = dispatch::free_slots(&runner, held);
        if free > 0 {
            eligible.push((runner, free));
        }
    }
    if eligible.is_empty() {
        return Ok(0);
    }
    let mut candidates: Vec<_> = eligible
        .iter()
        .map(|(runner, free)| dispatch::Candidate { runner_id: runner.id, labels: &runner.labels, free_slots: *free })
        .collect();
    // Walk the queue oldest first, a page at a time, and stop as soon as every free slot is
    // taken: the cost of an assign follows the slots it fills, not the length of the queue.
    let mut offers = Vec::new();
    let mut cursor: Option<QueueCursor> = None;
    let mut scanned = 0;
    while scanned < DISPATCH_SCAN_MAX && candidates.iter().any(|candidate| candidate.free_slots > 0) {
        let page = tx.attempts_queued(cursor, DISPATCH_PAGE)?;
        let Some((last, _)) = page.last() else { break };
        cursor = Some(QueueCursor { queued_at: last.queued_at, job_id: last.job_id, number: last.number });
        scanned += page.len();
        let waiting: Vec<_> =
            page.iter().map(|(attempt, labels)| dispatch::Waiting { job_id: attempt.job_id, labels }).collect();
        for (job_id, runner_id) in dispatch::plan(&waiting, &mut candidates) {
            let (attempt, _) =
                page.iter().find(|(attempt, _)| attempt.job_id == job_id).expect("offer names a queued job");
            offers.push((attempt.clone(), runner_id));
        }
        if page.len() < DISPATCH_PAGE {
            break;
        }
    }
    for (mut attempt, runner_id) in offers.iter().cloned() {
        let job_id = attempt.job_id;
        let mut job = get_job(tx, job_id)?;
        job.epoch = job.epoch.next();
        tx.job_update(&job)?;
        fx.dispatch_waits.push(Duration::from_millis(now.0.saturating_sub(attempt.queued_at.0)));
        attempt.state = attempt.state.on(AttemptEvent::Offer)?;
        attempt.runner_id = Some(runner_id);
        attempt.epoch = Some(job.epoch);
        attempt.offered_at = Some(now);
        attempt.accept_deadline = Some(now.plus(timeouts.accept_timeout));
        attempt.check_invariants();
        tx.attempt_update(&attempt)?;
        let (runner, _) =
            eligible.iter_mut().find(|(runner, _)| runner.id == runner_id).expect("offer names an eligible runner");
        runner.reported_free_slots -= 1;
        tx.runner_update(runner)?;
        send(tx, fx, runner_id, &Message::JobOffer { job_id, attempt: attempt.number, epoch: job.epoch }, now)?;
        emit(
            tx,
            fx,
            now,
            EventKind::JobOffered,
            Some(job_id),
            Some(attempt.number),
            Some(runner_id),
            serde_json::json!({ "epoch": job.epoch.0 }),
        )?;
    }
    Ok(offers.len())
}

/// What becomes of a revoked offer found among a runner's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revoked {
    /// Deleted (in a write transaction).
    Delete,
    /// Left out of the answer; the runner's next acking poll deletes it.
    Skip,
}

/// Messages waiting for a runner after `ack`, without offers that were revoked meanwhile
/// (accepting them could only fail; `revoked` says whether they are deleted too).
fn pending_messages(
    tx: &mut dyn Tx,
    runner_id: RunnerId,
    ack: MessageId,
    revoked: Revoked,
) -> Result<Vec<(MessageId, Message)>> {
    let mut out = Vec::new();
    for (id, message) in tx.messages_after(runner_id, ack, limits::POLL_MESSAGES_MAX)? {
        if let Message::JobOffer { job_id, attempt, epoch } = message {
            let current = tx.attempt_get(job_id, attempt)?;
            let still_offered =
                current.is_some_and(|attempt| attempt.state == AttemptState::Offered && attempt.epoch == Some(epoch));
            if !still_offered {
                if revoked == Revoked::Delete {
                    tx.message_delete(id)?;
                }
                continue;
            }
        }
        out.push((id, message));
    }
    Ok(out)
}

/// A poll's answer: the messages with the jobs they offer and those jobs' secrets.
fn polled(tx: &mut dyn Tx, messages: Vec<(MessageId, Message)>) -> Result<Polled> {
    let mut offered_jobs = Vec::new();
    let mut secrets = BTreeMap::new();
    for (_, message) in &messages {
        if let Message::JobOffer { job_id, .. } = message {
            let job = get_job(tx, *job_id)?;
            if let Some(run_id) = job.run_id {
                secrets.insert(job.id, crate::runs::secrets_of(tx, run_id)?);
            }
            offered_jobs.push(job);
        }
    }
    Ok(Polled { messages, offered_jobs, secrets })
}

/// Loads the attempt a job call names and checks the fence: the epoch must be the attempt's
/// current one, and the attempt must be the caller's.
fn fenced_attempt(
    tx: &mut dyn Tx,
    runner_id: RunnerId,
    job_id: JobId,
    number: AttemptNo,
    epoch: LeaseEpoch,
) -> Result<Attempt> {
    let attempt = get_attempt(tx, job_id, number)?;
    if attempt.epoch != Some(epoch) {
        let detail = match attempt.epoch {
            Some(current) => format!("current epoch is {current}, attempt is {}", attempt.state),
            None => format!("the attempt is {} with no live offer", attempt.state),
        };
        return Err(stale(job_id, number, epoch, detail));
    }
    if attempt.runner_id != Some(runner_id) {
        return Err(Error::Forbidden(format!("job {job_id} attempt {number} belongs to another runner")));
    }
    Ok(attempt)
}

fn live_session(tx: &mut dyn Tx, runner: &Runner, session_id: SessionId, now: Timestamp) -> Result<Session> {
    let Some(session) = tx.session_get(session_id)? else {
        return Err(not_found("session", session_id));
    };
    if session.runner_id != runner.id {
        return Err(Error::Forbidden(format!("session {session_id} belongs to another runner")));
    }
    if !session.is_live(now) || runner.session_id != Some(session_id) {
        return Err(Error::Conflict {
            code: "session_closed",
            message: format!("session {session_id} is no longer open"),
            hint: Some("open a new session".into()),
        });
    }
    Ok(session)
}

fn view_runner(tx: &mut dyn Tx, runner: Runner) -> Result<RunnerView> {
    let session = match runner.session_id {
        Some(id) => tx.session_get(id)?,
        None => None,
    };
    let held = tx.attempts_held(runner.id)?;
    let as_of = tx.event_last_seq()?;
    Ok(RunnerView { runner, session, held, as_of })
}

/// Returns the slot an unaccepted offer took: no worker was started for it, and none can be,
/// because its accept now fails.
/// Cancels a job inside a transaction (see [`Store::cancel_job`]); does not tell its run.
pub(crate) fn cancel_in_tx(tx: &mut dyn Tx, fx: &mut Effects, job_id: JobId, now: Timestamp) -> Result<Job> {
    let mut job = get_job(tx, job_id)?;
    if job.state == JobState::Completed {
        if job.conclusion == Some(JobConclusion::Cancelled) {
            return Ok(job);
        }
        return Err(Error::Conflict {
            code: "job_completed",
            message: format!(
                "job {job_id} already completed ({})",
                job.conclusion.map(|c| c.to_string()).unwrap_or_default()
            ),
            hint: None,
        });
    }
    if job.cancel_requested {
        return Ok(job);
    }
    let mut attempt = get_attempt(tx, job_id, job.attempt)?;
    match attempt.state {
        AttemptState::Queued | AttemptState::Offered => {
            let held_by = attempt.state.holds_runner().then_some(attempt.runner_id).flatten();
            attempt.state = attempt.state.on(AttemptEvent::Cancel)?;
            attempt.result = Some(AttemptResult::Cancelled);
            attempt.reason = Some("cancelled before it started".into());
            attempt.ended_at = Some(now);
            attempt.accept_deadline = None;
            attempt.check_invariants();
            tx.attempt_update(&attempt)?;
            if let Some(runner_id) = held_by {
                give_back_slot(tx, runner_id)?;
            }
            job.state = job.state.on(JobEvent::Cancel)?;
            job.conclusion = Some(JobConclusion::Cancelled);
            job.cancel_requested = true;
            job.completed_at = Some(now);
            tx.job_update(&job)?;
            emit(
                tx,
                fx,
                now,
                EventKind::JobCompleted,
                Some(job_id),
                Some(attempt.number),
                held_by,
                serde_json::json!({ "conclusion": "cancelled", "epoch": attempt.epoch.map(|epoch| epoch.0) }),
            )?;
        }
        AttemptState::Running => {
            attempt.state = attempt.state.on(AttemptEvent::Cancel)?;
            tx.attempt_update(&attempt)?;
            job.cancel_requested = true;
            tx.job_update(&job)?;
            let runner_id = attempt.runner_id.expect("running attempt has a runner");
            let epoch = attempt.epoch.expect("running attempt has an epoch");
            send(tx, fx, runner_id, &Message::Cancel { job_id, attempt: attempt.number, epoch }, now)?;
            emit(
                tx,
                fx,
                now,
                EventKind::JobCancelRequested,
                Some(job_id),
                Some(attempt.number),
                Some(runner_id),
                serde_json::json!({}),
            )?;
        }
        AttemptState::Completed | AttemptState::Lost => {
            unreachable!("the current attempt of an unfinished job is never terminal")
        }
    }
    Ok(job)
}

/// Retire-if-idle inside a transaction (see [`Store::retire_if_idle`]).
pub(crate) fn retire_in_tx(
    tx: &mut dyn Tx,
    fx: &mut Effects,
    runner_id: RunnerId,
    now: Timestamp,
) -> Result<RetireOutcome> {
    let mut runner = get_runner(tx, runner_id)?;
    if let Some(held) = tx.attempts_held(runner_id)?.first() {
        return Ok(RetireOutcome::Busy { job_id: held.job_id, attempt: held.number });
    }
    if matches!(runner.state, RunnerState::Retiring | RunnerState::Gone) {
        return Ok(RetireOutcome::Retired);
    }
    runner.state = runner.state.on(RunnerEvent::Retire)?;
    tx.runner_update(&runner)?;
    if runner.session_id.is_some() {
        send(tx, fx, runner_id, &Message::Retire, now)?;
    }
    emit(tx, fx, now, EventKind::RunnerRetiring, None, None, Some(runner_id), serde_json::json!({}))?;
    Ok(RetireOutcome::Retired)
}

pub(crate) fn give_back_slot(tx: &mut dyn Tx, runner_id: RunnerId) -> Result<()> {
    let mut runner = get_runner(tx, runner_id)?;
    runner.reported_free_slots = (runner.reported_free_slots + 1).min(runner.capacity);
    tx.runner_update(&runner)?;
    Ok(())
}

pub(crate) fn send(
    tx: &mut dyn Tx,
    fx: &mut Effects,
    runner_id: RunnerId,
    message: &Message,
    now: Timestamp,
) -> Result<()> {
    tx.message_insert(runner_id, message, now)?;
    fx.message(runner_id);
    Ok(())
}

#[expect(clippy::too_many_arguments, reason = "an event row has that many columns")]
pub(crate) fn emit(
    tx: &mut dyn Tx,
    fx: &mut Effects,
    now: Timestamp,
    kind: EventKind,
    job_id: Option<JobId>,
    attempt: Option<AttemptNo>,
    runner_id: Option<RunnerId>,
    data: serde_json::Value,
) -> Result<EventSeq> {
    let seq = tx.event_insert(&Event {
        seq: EventSeq(0),
        at: now,
        kind,
        job_id,
        attempt,
        runner_id,
        data: data.to_string(),
    })?;
    fx.events.push(kind);
    if kind == EventKind::JobCompleted
        && let Some(job_id) = job_id
        && let Some(job) = tx.job_get(job_id)?
    {
        fx.job_durations.push(Duration::from_millis(at_or(now, job.created_at)));
    }
    if kind == EventKind::RunnerGone
        && let Some(runner_id) = runner_id
    {
        fx.gone.push(runner_id);
    }
    Ok(seq)
}

/// Milliseconds from `since` to `now`, zero if the clock says otherwise.
fn at_or(now: Timestamp, since: Timestamp) -> u64 {
    now.0.saturating_sub(since.0)
}

pub(crate) fn get_runner(tx: &mut dyn Tx, id: RunnerId) -> Result<Runner> {
    tx.runner_get(id)?.ok_or_else(|| not_found("runner", id))
}

pub(crate) fn get_job(tx: &mut dyn Tx, id: JobId) -> Result<Job> {
    tx.job_get(id)?.ok_or_else(|| not_found("job", id))
}

fn get_attempt(tx: &mut dyn Tx, job_id: JobId, number: AttemptNo) -> Result<Attempt> {
    let attempt = tx.attempt_get(job_id, number)?.ok_or_else(|| not_found("attempt", format!("{job_id}/{number}")))?;
    attempt.check_invariants();
    Ok(attempt)
}

pub(crate) fn not_found(what: &'static str, id: impl std::fmt::Display) -> Error {
    Error::NotFound { what, id: id.to_string() }
}

fn stale(job_id: JobId, attempt: AttemptNo, presented: LeaseEpoch, detail: String) -> Error {
    Error::StaleLease { job_id, attempt, presented, detail }
}

pub(crate) fn check_name_field(field: &'static str, name: &str) -> Result<()> {
    limits::check_name(name).map_err(|message| Error::Invalid { field, message: message.into() })
}

pub(crate) fn check_labels(labels: &[String]) -> Result<()> {
    limits::check_labels(labels).map_err(|message| Error::Invalid { field: "labels", message: message.into() })
}

fn check_new_runner(name: &str, labels: &[String], capacity: u32) -> Result<()> {
    check_name_field("name", name)?;
    check_labels(labels)?;
    if capacity == 0 || capacity > limits::CAPACITY_MAX {
        return Err(Error::Invalid { field: "capacity", message: format!("must be 1 to {}", limits::CAPACITY_MAX) });
    }
    Ok(())
}

fn check_outputs(outputs: &BTreeMap<String, String>) -> Result<()> {
    if outputs.len() > limits::OUTPUTS_MAX {
        return Err(Error::Invalid { field: "outputs", message: format!("at most {} outputs", limits::OUTPUTS_MAX) });
    }
    for (name, value) in outputs {
        if name.is_empty() || name.len() > limits::NAME_LEN_MAX * 4 {
            return Err(Error::Invalid {
                field: "outputs",
                message: format!("output name {name:?} must be 1 to 256 bytes"),
            });
        }
        if value.len() > limits::OUTPUT_VALUE_BYTES_MAX {
            return Err(Error::Invalid {
                field: "outputs",
                message: format!("output {name:?} is over {} bytes", limits::OUTPUT_VALUE_BYTES_MAX),
            });
        }
    }
    Ok(())
}
