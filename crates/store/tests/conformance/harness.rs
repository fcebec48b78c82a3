//! The fixture every conformance test runs on: a [`Store`] over one backend, plus raw access to
//! that backend for the few facts the store's API does not expose (how often a registration
//! token was used, revoking a token, the messages queued for a runner).
//!
//! Nothing here reads a clock: every instant is an explicit [`Timestamp`], so each test is exact
//! and runs the same on both backends.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use baton_core::{
    AttemptNo, AttemptState, EventKind, EventSeq, Job, JobId, LeaseEpoch, Message, MessageId, RegistrationToken,
    Runner, RunnerId, Session, Timeouts, Timestamp,
};
use baton_store::mem::MemBackend;
use baton_store::sqlite::{Durability, SqliteBackend};
use baton_store::{
    Backend, Error, Event, JobView, Lease, LogChunk, NewJob, NewRunner, Polled, RunnerView, Store, StoreError, Tx,
};

/// A random number for scratch names, without a clock or a dependency.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    hasher.finish()
}

/// Makes a fresh schema in the PostgreSQL database at `url`; answers `url` scoped to it.
pub fn scratch_schema(url: &str) -> String {
    let schema = format!("conformance_{}_{:016x}", std::process::id(), rand_u64());
    let mut admin = postgres::Client::connect(url, postgres::NoTls).expect("connect to BATON_TEST_POSTGRES_URL");
    admin.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("create a scratch schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// The instant most tests start at. Small and explicit, so deadlines can be written out.
pub const T0: Timestamp = Timestamp(1_000);

/// Small protocol timeouts, so deadlines are easy to compute by hand: a lease lasts 1 s, an offer
/// waits 500 ms for its accept, a session lives 3 s after its last touch.
pub const TIMEOUTS: Timeouts = Timeouts {
    lease_ttl: Duration::from_secs(1),
    accept_timeout: Duration::from_millis(500),
    session_ttl: Duration::from_secs(3),
    long_poll_max: Duration::from_secs(1),
};

/// A registration token that every harness creates: never expires within a test, unlimited uses.
pub const OPEN_TOKEN: &str = "token-open";

/// An instant no test reaches; used as the expiry of tokens that must stay valid.
pub const FAR_FUTURE: Timestamp = Timestamp(1_000_000_000);

/// Lets the store and the test share one in-memory backend: the store gets a boxed handle, the
/// test keeps another for raw reads and writes.
#[derive(Debug)]
struct SharedBackend(Arc<dyn Backend>);

impl Backend for SharedBackend {
    fn write(&self, body: &mut dyn FnMut(&mut dyn Tx) -> Result<bool, StoreError>) -> Result<(), StoreError> {
        self.0.write(body)
    }

    fn read(&self, body: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>) -> Result<(), StoreError> {
        self.0.read(body)
    }
}

/// One store under test, with raw access to its rows.
#[derive(Debug)]
pub struct Harness {
    pub store: Store,
    /// Which backend this is, for failure messages.
    pub backend_name: &'static str,
    /// The same rows as the store's: the same object for memory, a second connection set on the
    /// same database file for SQLite.
    raw: Arc<dyn Backend>,
    /// Every registration token created through the harness, so snapshots can include them.
    token_hashes: RefCell<Vec<String>>,
    /// Keeps the SQLite database's directory alive as long as the store.
    _directory: Option<tempfile::TempDir>,
}

/// Everything a test can observe about the store, for "this call changed nothing" checks.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub runners: Vec<RunnerView>,
    pub jobs: Vec<JobView>,
    pub events: Vec<Event>,
    pub tokens: Vec<RegistrationToken>,
    pub messages: BTreeMap<RunnerId, Vec<(MessageId, Message)>>,
    pub logs: BTreeMap<(JobId, AttemptNo), Vec<LogChunk>>,
    pub last_alive: Option<String>,
}

/// A job that a runner has accepted, with everything later calls need.
#[derive(Debug, Clone)]
pub struct RunningJob {
    pub runner: Runner,
    pub session: Session,
    pub job: Job,
    pub attempt: AttemptNo,
    pub epoch: LeaseEpoch,
    pub lease: Lease,
}

impl Harness {
    /// A store over a fresh in-memory backend. This is what [`Store::open_memory`] builds, except
    /// that the harness keeps a second handle on the backend for raw access.
    pub fn memory() -> Harness {
        let backend: Arc<dyn Backend> = Arc::new(MemBackend::new());
        let store = Store::new(Box::new(SharedBackend(Arc::clone(&backend))), TIMEOUTS);
        Harness::with(store, "mem", backend, None)
    }

    /// A store over a fresh SQLite database in its own temporary directory.
    pub fn sqlite() -> Harness {
        let directory = tempfile::tempdir().expect("a temporary directory can be created");
        let path = directory.path().join("baton.db");
        let store = Store::open_sqlite(&path, Durability::Normal, TIMEOUTS).expect("a fresh SQLite store opens");
        // A second backend on the same file: it sees exactly what the store committed, which
        // is what a second server process would see.
        let raw: Arc<dyn Backend> =
            Arc::new(SqliteBackend::open(&path, Durability::Normal).expect("the SQLite store opens a second time"));
        Harness::with(store, "sqlite", raw, Some(directory))
    }

    /// A store over a fresh schema of the PostgreSQL database named by
    /// `BATON_TEST_POSTGRES_URL`. Without the variable: `None` (the test is skipped), except
    /// under `CI=true`, where a missing database fails the test.
    pub fn postgres() -> Option<Harness> {
        let Some(url) = std::env::var("BATON_TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty()) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but BATON_TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL"
            );
            eprintln!(
                "skipped: set BATON_TEST_POSTGRES_URL (scripts/test.sh does) to run the PostgreSQL conformance tests"
            );
            return None;
        };
        let scoped = scratch_schema(&url);
        let store = Store::open_postgres(&scoped, TIMEOUTS).expect("a fresh PostgreSQL store opens");
        let raw: Arc<dyn Backend> =
            Arc::new(baton_store::postgres::PostgresBackend::open(&scoped).expect("the PostgreSQL store opens twice"));
        Some(Harness::with(store, "postgres", raw, None))
    }

    fn with(
        store: Store,
        backend_name: &'static str,
        raw: Arc<dyn Backend>,
        directory: Option<tempfile::TempDir>,
    ) -> Harness {
        let harness =
            Harness { store, backend_name, raw, token_hashes: RefCell::new(Vec::new()), _directory: directory };
        harness.create_token(OPEN_TOKEN, &[], "default", FAR_FUTURE, None, Timestamp::ZERO);
        harness
    }

    // ----- raw access -----

    /// Runs `body` in a read transaction on the raw backend.
    pub fn raw_read<T>(&self, mut body: impl FnMut(&mut dyn Tx) -> Result<T, StoreError>) -> T {
        let mut out = None;
        self.raw
            .read(&mut |tx| {
                out = Some(body(tx)?);
                Ok(())
            })
            .expect("a raw read succeeds");
        out.expect("the raw read ran its body")
    }

    /// Runs `body` in a write transaction on the raw backend and commits it.
    pub fn raw_write(&self, mut body: impl FnMut(&mut dyn Tx) -> Result<(), StoreError>) {
        self.raw
            .write(&mut |tx| {
                body(tx)?;
                Ok(true)
            })
            .expect("a raw write succeeds");
    }

    pub fn token(&self, hash: &str) -> RegistrationToken {
        self.raw_read(|tx| tx.registration_token_by_hash(hash)).expect("the token exists")
    }

    /// Marks a token revoked. The store has no script for it yet, so this writes the row.
    pub fn revoke_token(&self, hash: &str) {
        self.raw_write(|tx| {
            let mut token = tx.registration_token_by_hash(hash)?.expect("the token to revoke exists");
            token.revoked = true;
            tx.registration_token_update(&token)
        });
    }

    /// The messages queued for a runner and not yet acknowledged, without delivering them.
    pub fn queued_messages(&self, runner_id: RunnerId) -> Vec<(MessageId, Message)> {
        self.raw_read(|tx| tx.messages_after(runner_id, MessageId(0), 1000))
    }

    pub fn snapshot(&self) -> Snapshot {
        let runners = self.store.runners(RunnerId(0), 1000).expect("runners can be listed");
        let jobs = self.store.jobs(JobId(0), 1000).expect("jobs can be listed");
        let events = self.events();
        let tokens = self.token_hashes.borrow().iter().map(|hash| self.token(hash)).collect();
        let messages = runners.iter().map(|view| (view.runner.id, self.queued_messages(view.runner.id))).collect();
        let logs = jobs
            .iter()
            .flat_map(|view| view.attempts.iter())
            .map(|attempt| {
                let chunks = self.store.logs(attempt.job_id, attempt.number, 0, 1000).expect("logs can be read");
                ((attempt.job_id, attempt.number), chunks)
            })
            .collect();
        let last_alive = self.store.meta_get("clock.last_alive").expect("meta can be read");
        Snapshot { runners, jobs, events, tokens, messages, logs, last_alive }
    }

    /// Runs `call`, asserts that it failed and that the store is exactly as before, and returns
    /// the error for the caller to inspect.
    pub fn fails_without_writing<T: Debug>(&self, what: &str, call: impl FnOnce() -> Result<T, Error>) -> Error {
        let before = self.snapshot();
        let outcome = call();
        let after = self.snapshot();
        assert_eq!(before, after, "[{}] {what}: a failed call changed the store", self.backend_name);
        match outcome {
            Ok(value) => panic!("[{}] {what}: expected an error, got {value:?}", self.backend_name),
            Err(error) => error,
        }
    }

    /// Runs `call`, asserts that it succeeded and that the store is exactly as before (a retry or
    /// a no-op), and returns its value.
    pub fn succeeds_without_writing<T: Debug>(&self, what: &str, call: impl FnOnce() -> Result<T, Error>) -> T {
        let before = self.snapshot();
        let outcome = call();
        let after = self.snapshot();
        assert_eq!(before, after, "[{}] {what}: a no-op call changed the store", self.backend_name);
        match outcome {
            Ok(value) => value,
            Err(error) => panic!("[{}] {what}: expected success, got {error:?}", self.backend_name),
        }
    }

    // ----- events -----

    pub fn events(&self) -> Vec<Event> {
        self.store.events_after(EventSeq(0), 1000).expect("events can be read")
    }

    pub fn events_after(&self, after: EventSeq) -> Vec<Event> {
        self.store.events_after(after, 1000).expect("events can be read")
    }

    pub fn kinds_after(&self, after: EventSeq) -> Vec<EventKind> {
        self.events_after(after).iter().map(|event| event.kind).collect()
    }

    pub fn last_seq(&self) -> EventSeq {
        self.store.last_event_seq().expect("the last event sequence can be read")
    }

    /// How many events of `kind` name `job_id`.
    pub fn count_job_events(&self, kind: EventKind, job_id: JobId) -> usize {
        self.events().iter().filter(|event| event.kind == kind && event.job_id == Some(job_id)).count()
    }

    // ----- setup steps -----

    pub fn create_token(
        &self,
        hash: &str,
        labels: &[&str],
        pool: &str,
        expires_at: Timestamp,
        max_uses: Option<u32>,
        now: Timestamp,
    ) -> RegistrationToken {
        let labels = strings(labels);
        let token = self
            .store
            .create_registration_token(hash, &labels, pool, expires_at, max_uses, now)
            .expect("the registration token is created");
        self.token_hashes.borrow_mut().push(hash.to_string());
        token
    }

    /// Registers a persistent runner with the open token; its credential is `credential-<name>`.
    pub fn register(&self, name: &str, labels: &[&str], capacity: u32, now: Timestamp) -> Runner {
        self.store
            .register_runner(OPEN_TOKEN, &new_runner(name, labels, capacity, false), &format!("credential-{name}"), now)
            .expect("the runner registers")
    }

    /// Registers an ephemeral runner with the open token.
    pub fn register_ephemeral(&self, name: &str, labels: &[&str], now: Timestamp) -> Runner {
        self.store
            .register_runner(OPEN_TOKEN, &new_runner(name, labels, 1, true), &format!("credential-{name}"), now)
            .expect("the ephemeral runner registers")
    }

    /// Registers a persistent runner and opens its session.
    pub fn connect(&self, name: &str, labels: &[&str], capacity: u32, now: Timestamp) -> (Runner, Session) {
        let runner = self.register(name, labels, capacity, now);
        let session = self.store.open_session(runner.id, now).expect("the session opens");
        (self.runner(runner.id), session)
    }

    pub fn enqueue(&self, name: &str, labels: &[&str], now: Timestamp) -> Job {
        self.enqueue_with_attempts(name, labels, 3, now)
    }

    pub fn enqueue_with_attempts(&self, name: &str, labels: &[&str], max_attempts: u32, now: Timestamp) -> Job {
        let new = NewJob { name: name.to_string(), labels: strings(labels), spec: "{}".to_string(), max_attempts };
        self.store.enqueue(&new, now).expect("the job is enqueued").job
    }

    pub fn poll(&self, runner: &Runner, session: &Session, free_slots: u32, ack: MessageId, now: Timestamp) -> Polled {
        self.store.poll(runner.id, session.id, free_slots, ack, now).expect("the poll succeeds")
    }

    /// Connects a capacity-1 runner, enqueues one job, offers it with a poll at `now` and
    /// accepts it at `now + 100 ms`; the lease then runs until `now + 1100 ms`.
    pub fn start_job(&self, runner_name: &str, job_name: &str, max_attempts: u32, now: Timestamp) -> RunningJob {
        let (runner, session) = self.connect(runner_name, &["linux"], 1, now);
        let job = self.enqueue_with_attempts(job_name, &["linux"], max_attempts, now);
        let polled = self.poll(&runner, &session, 1, MessageId(0), now);
        let offers = offers(&polled);
        assert_eq!(offers.len(), 1, "[{}] one job was queued, so one offer: {polled:?}", self.backend_name);
        let (_, job_id, attempt, epoch) = offers[0];
        assert_eq!(job_id, job.id);
        let lease =
            self.store.accept(runner.id, job.id, attempt, epoch, now.plus(ms(100))).expect("the offer is accepted");
        RunningJob { runner: self.runner(runner.id), session, job: self.job(job.id), attempt, epoch, lease }
    }

    // ----- reads -----

    pub fn runner(&self, runner_id: RunnerId) -> Runner {
        self.runner_view(runner_id).runner
    }

    pub fn runner_view(&self, runner_id: RunnerId) -> RunnerView {
        self.store.runner_view(runner_id).expect("the runner exists")
    }

    pub fn job(&self, job_id: JobId) -> Job {
        self.job_view(job_id).job
    }

    pub fn job_view(&self, job_id: JobId) -> JobView {
        self.store.job_view(job_id).expect("the job exists")
    }

    pub fn attempt(&self, job_id: JobId, number: AttemptNo) -> baton_core::Attempt {
        self.store.attempt(job_id, number).expect("the attempt exists")
    }

    /// Checks the invariants of DESIGN.md section 9 that a store snapshot can show, on every
    /// runner and job: `busy` equals "an offered or running attempt references it", the event
    /// stream accounts for exactly the attempts each runner holds, no runner holds more than
    /// its capacity, each completed job has exactly one `job.completed` event and each other job
    /// none, and a job has at most one live attempt, its newest.
    pub fn check_invariants(&self) {
        let backend = self.backend_name;
        let events = self.events();
        // Strictly increasing, not gapless: a PostgreSQL sequence may skip numbers that a rolled
        // back transaction drew, and that is allowed.
        for pair in events.windows(2) {
            assert!(pair[0].seq < pair[1].seq, "[{backend}] event sequence is not increasing: {pair:?}");
        }
        let jobs = self.store.jobs(JobId(0), 1000).expect("jobs can be listed");
        for view in self.store.runners(RunnerId(0), 1000).expect("runners can be listed") {
            let runner_id = view.runner.id;
            let referenced: Vec<_> = jobs
                .iter()
                .flat_map(|job| job.attempts.iter())
                .filter(|attempt| attempt.state.holds_runner() && attempt.runner_id == Some(runner_id))
                .cloned()
                .collect();
            assert_eq!(view.held, referenced, "[{backend}] runner {runner_id}: held differs from the attempts");
            assert_eq!(view.busy(), !referenced.is_empty(), "[{backend}] runner {runner_id}: busy is wrong");
            assert_eq!(
                held_according_to_events(&events, runner_id),
                i64::try_from(view.held.len()).expect("few attempts"),
                "[{backend}] runner {runner_id}: the event stream disagrees with the attempts it holds"
            );
            let capacity = usize::try_from(view.runner.capacity).expect("capacity fits usize");
            assert!(view.held.len() <= capacity, "[{backend}] runner {runner_id} holds more than its capacity");
        }
        for view in &jobs {
            let job = &view.job;
            let completed_events = events
                .iter()
                .filter(|event| event.kind == EventKind::JobCompleted && event.job_id == Some(job.id))
                .count();
            let expected = usize::from(job.state == baton_core::JobState::Completed);
            assert_eq!(completed_events, expected, "[{backend}] job {}: job.completed events", job.id);
            let live: Vec<_> = view.attempts.iter().filter(|attempt| attempt.state.holds_runner()).collect();
            assert!(live.len() <= 1, "[{backend}] job {} has more than one live attempt", job.id);
            if let Some(attempt) = live.first() {
                assert_eq!(attempt.number, job.attempt, "[{backend}] job {}: a live attempt is not the newest", job.id);
            }
            for attempt in &view.attempts {
                attempt.check_invariants();
                if attempt.number != job.attempt {
                    assert!(
                        attempt.state.is_terminal(),
                        "[{backend}] job {}: an older attempt {} is {}",
                        job.id,
                        attempt.number,
                        attempt.state
                    );
                }
                if let Some(epoch) = attempt.epoch {
                    assert!(epoch <= job.epoch, "[{backend}] job {}: attempt epoch beyond the job's", job.id);
                }
                if attempt.state == AttemptState::Lost {
                    assert!(attempt.result.is_none(), "[{backend}] a lost attempt has a result");
                }
            }
        }
    }
}

/// How many attempts `runner_id` holds according to the event stream alone: one more after each
/// offer, one fewer after each event that names the runner and frees a slot.
pub fn held_according_to_events(events: &[Event], runner_id: RunnerId) -> i64 {
    events
        .iter()
        .filter(|event| event.runner_id == Some(runner_id))
        .map(|event| i64::from(event.kind.takes_slot()) - i64::from(event.kind.frees_slot()))
        .sum()
}

/// The job offers in a poll's answer, as `(message id, job, attempt, epoch)`.
pub fn offers(polled: &Polled) -> Vec<(MessageId, JobId, AttemptNo, LeaseEpoch)> {
    polled
        .messages
        .iter()
        .filter_map(|(id, message)| match *message {
            Message::JobOffer { job_id, attempt, epoch } => Some((*id, job_id, attempt, epoch)),
            _ => None,
        })
        .collect()
}

/// The event's JSON details, parsed.
pub fn data(event: &Event) -> serde_json::Value {
    serde_json::from_str(&event.data).expect("event data is JSON")
}

pub fn new_runner(name: &str, labels: &[&str], capacity: u32, ephemeral: bool) -> NewRunner {
    NewRunner { name: name.to_string(), labels: strings(labels), capacity, ephemeral }
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

pub fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// `T0` plus some milliseconds.
pub fn at(millis_after_t0: u64) -> Timestamp {
    T0.plus(ms(millis_after_t0))
}

/// The machine-readable code of a conflict, if the error is one.
pub fn conflict_code(error: &Error) -> Option<&'static str> {
    match error {
        Error::Conflict { code, .. } => Some(code),
        _ => None,
    }
}

pub fn assert_conflict(error: &Error, code: &str) {
    assert_eq!(conflict_code(error), Some(code), "expected conflict {code:?}, got {error:?}");
}

pub fn assert_unauthorized(error: &Error) {
    assert!(matches!(error, Error::Unauthorized(_)), "expected unauthorized, got {error:?}");
}

pub fn assert_forbidden(error: &Error) {
    assert!(matches!(error, Error::Forbidden(_)), "expected forbidden, got {error:?}");
}

pub fn assert_invalid(error: &Error, expected_field: &str) {
    assert!(
        matches!(error, Error::Invalid { field, .. } if *field == expected_field),
        "expected invalid {expected_field:?}, got {error:?}"
    );
}

/// Asserts a stale-lease answer for exactly this job, attempt and presented epoch.
pub fn assert_stale(error: &Error, expected_job: JobId, expected_attempt: AttemptNo, expected_epoch: LeaseEpoch) {
    assert!(
        matches!(
            error,
            Error::StaleLease { job_id, attempt, presented, .. }
                if *job_id == expected_job && *attempt == expected_attempt && *presented == expected_epoch
        ),
        "expected a stale lease for job {expected_job} attempt {expected_attempt} epoch {expected_epoch}, got {error:?}"
    );
}
