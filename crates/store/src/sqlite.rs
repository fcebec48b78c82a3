//! The SQLite backend: the embedded default.
//!
//! One writer connection runs write transactions with `BEGIN IMMEDIATE`, so they are serial and
//! each script's predicate and effect commit together. Scripts that queue for the writer share
//! a commit (see [`SqliteBackend::write`]). A small pool of reader connections
//! serves read transactions from WAL snapshots without blocking the writer. Timestamps are
//! stored as integer milliseconds, lists and maps as JSON text, states by their core names.
//!
//! rusqlite rather than sqlx: transactions here are synchronous closures over one connection,
//! which keeps every script a plain function, and a statement costs a function call instead of
//! a hop to a per-connection worker thread.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use baton_core::{
    Attempt, AttemptNo, AttemptResult, AttemptState, Delivery, EventKind, EventSeq, JitConfig, Job, JobConclusion,
    JobId, JobState, LeaseEpoch, Message, MessageId, RegistrationToken, Run, RunId, Runner, RunnerId, RunnerState,
    Session, SessionId, SessionState, Timestamp, Webhook,
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::StoreError;
use crate::tx::{Backend, Event, LogChunk, QueueCursor, Tx};

type R<T> = std::result::Result<T, StoreError>;

/// Migrations in order; `PRAGMA user_version` records how many were applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_attempt_indexes_by_state.sql"),
];

/// Reader connections kept open for read transactions.
const READERS: usize = 4;

/// How much a commit survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a committed transaction survives a crash of the Baton
    /// process; the newest commits may be lost if the machine loses power.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on disk before it is acknowledged, and survives a
    /// power loss, at the cost of an fsync per commit.
    Full,
}

#[derive(Debug)]
pub struct SqliteBackend {
    writer: Mutex<Writer>,
    /// Writes waiting for the writer: while there are any, a finished script leaves its
    /// transaction open for them to join.
    queued: AtomicUsize,
    readers: Vec<Mutex<Connection>>,
    durability: Durability,
    checkpointer: Checkpointer,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path, durability: Durability) -> R<SqliteBackend> {
        let mut writer = Connection::open(path)?;
        configure(&writer, durability)?;
        migrate(&mut writer)?;
        // Commits never checkpoint themselves: copying the log into the database (and its
        // fsync) would land in the middle of whichever request happened to commit then.
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoint = Connection::open(path)?;
        configure(&checkpoint, durability)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open(path)?;
            configure(&reader, durability)?;
            reader.pragma_update(None, "query_only", true)?;
            readers.push(Mutex::new(reader));
        }
        let checkpointer = Checkpointer::start(checkpoint)?;
        Ok(SqliteBackend {
            writer: Mutex::new(Writer { connection: writer, open: None }),
            queued: AtomicUsize::new(0),
            readers,
            durability,
            checkpointer,
        })
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        for reader in &self.readers {
            if let Ok(guard) = reader.try_lock() {
                return guard;
            }
        }
        self.readers[0].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Prepared statements kept per connection. The scripts use a few dozen distinct statements;
/// rusqlite's default of 16 would re-parse most of them on every transaction.
const STATEMENT_CACHE: usize = 256;

fn configure(connection: &Connection, durability: Durability) -> R<()> {
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans that do not depend on bound values. Without this, SQLite 3.51 reads a bound
    // `LIMIT ?` while planning and marks the statement stale whenever it is bound again, so a
    // cached statement was compiled anew on every run.
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    connection.pragma_update(None, "synchronous", synchronous)?;
    connection.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

fn migrate(connection: &mut Connection) -> R<()> {
    let applied: u32 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let known = u32::try_from(MIGRATIONS.len()).expect("fewer than 2^32 migrations");
    if applied > known {
        return Err(StoreError::SchemaTooNew { found: applied, known });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let version = u32::try_from(index + 1).expect("fewer than 2^32 migrations");
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql).map_err(|error| StoreError::Migration { version, message: error.to_string() })?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied sqlite migration");
    }
    Ok(())
}

impl Backend for SqliteBackend {
    /// Runs `body` in the writer's transaction, and answers once that transaction committed.
    ///
    /// Group commit: when other writes are queued for the writer as `body` finishes, the
    /// transaction stays open and the next write runs in it, inside a savepoint of its own
    /// (a script that fails rolls back alone). The last write of the group, or the
    /// [`GROUP_MAX`]th, commits for all of them; until then none of them has answered, so
    /// each still takes effect at one instant, in the order they held the writer. A failed
    /// commit fails every write of the group.
    fn write(&self, body: &mut dyn FnMut(&mut dyn Tx) -> R<bool>) -> R<()> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.queued.fetch_sub(1, Ordering::AcqRel);
        let joined = writer.open.is_some();
        if let Err(error) = writer.connection.execute_batch(if joined { "SAVEPOINT script" } else { "BEGIN IMMEDIATE" })
        {
            // The writes waiting in the group would otherwise wait for a commit nobody makes.
            writer.fail_group("a write could not join the transaction");
            return Err(error.into());
        }
        let mut unwinding = Unwinding(Some(writer));
        let outcome = body(&mut SqliteTx { connection: &unwinding.writer().connection });
        let mut writer = unwinding.disarm();
        let keep = matches!(outcome, Ok(true));
        if !joined {
            if !keep {
                if !writer.connection.is_autocommit() {
                    writer.connection.execute_batch("ROLLBACK")?;
                }
                return outcome.map(|_| ());
            }
            writer.open = Some(Group { batch: Arc::new(Batch::default()), members: 0 });
        } else if writer.connection.is_autocommit() {
            // The error ended the whole transaction (SQLite does so on a full disk, say): the
            // writes that joined it are lost with it.
            writer.fail_group("a write sharing the transaction ended it");
            return outcome.map(|_| ());
        } else {
            let close = if keep { "RELEASE script" } else { "ROLLBACK TO script; RELEASE script" };
            if let Err(error) = writer.connection.execute_batch(close) {
                writer.fail_group("a write sharing the transaction could not close its savepoint");
                return Err(error.into());
            }
        }
        let group = writer.open.as_mut().expect("a write in a group");
        group.members += 1;
        if self.queued.load(Ordering::Acquire) > 0 && group.members < GROUP_MAX {
            let batch = group.batch.clone();
            drop(writer);
            return batch.wait().and(outcome.map(|_| ()));
        }
        let group = writer.open.take().expect("a write in a group");
        let committed = writer.connection.execute_batch("COMMIT");
        if committed.is_err() && !writer.connection.is_autocommit() {
            let _ = writer.connection.execute_batch("ROLLBACK");
        }
        group.batch.finish(committed.as_ref().map(|_| ()).map_err(|error| error.to_string()));
        committed?;
        self.checkpointer.committed();
        outcome.map(|_| ())
    }

    /// At once when the writer is free and a commit does not wait for an fsync.
    fn writes_at_once(&self) -> bool {
        self.durability == Durability::Normal && self.writer.try_lock().is_ok()
    }

    fn read(&self, body: &mut dyn FnMut(&mut dyn Tx) -> R<()>) -> R<()> {
        let mut connection = self.reader();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Deferred)?;
        body(&mut SqliteTx { connection: &tx })?;
        tx.commit()?;
        Ok(())
    }
}

/// Writes that share one commit, at most: bounds how long the first of them waits.
const GROUP_MAX: usize = 32;

/// The writer connection, and the group of writes whose transaction is open on it.
#[derive(Debug)]
struct Writer {
    connection: Connection,
    open: Option<Group>,
}

impl Writer {
    /// Rolls back the open transaction, if any, and fails the writes waiting for its commit.
    fn fail_group(&mut self, why: &str) {
        if !self.connection.is_autocommit() {
            let _ = self.connection.execute_batch("ROLLBACK");
        }
        if let Some(group) = self.open.take() {
            group.batch.finish(Err(why.to_string()));
        }
    }
}

#[derive(Debug)]
struct Group {
    batch: Arc<Batch>,
    /// Scripts run in the open transaction so far.
    members: usize,
}

/// How a group's commit ended, for the writes that wait for it.
#[derive(Debug, Default)]
struct Batch {
    outcome: Mutex<Option<Result<(), String>>>,
    done: Condvar,
}

impl Batch {
    fn finish(&self, outcome: Result<(), String>) {
        *self.outcome.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(outcome);
        self.done.notify_all();
    }

    fn wait(&self) -> R<()> {
        let mut outcome = self.outcome.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            match &*outcome {
                Some(Ok(())) => return Ok(()),
                Some(Err(message)) => return Err(StoreError::GroupCommit(message.clone())),
                None => outcome = self.done.wait(outcome).unwrap_or_else(|poisoned| poisoned.into_inner()),
            }
        }
    }
}

/// Fails the open group if a script panics while it holds the writer, so that no write waits
/// for a commit that will not come, and no later write joins a half-done transaction.
struct Unwinding<'w>(Option<MutexGuard<'w, Writer>>);

impl<'w> Unwinding<'w> {
    fn writer(&self) -> &Writer {
        self.0.as_deref().expect("armed while the script runs")
    }

    fn disarm(&mut self) -> MutexGuard<'w, Writer> {
        self.0.take().expect("disarmed once")
    }
}

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if let Some(mut writer) = self.0.take() {
            writer.fail_group("a write sharing the transaction panicked");
        }
    }
}

/// Commits between two checkpoints, at most, while writes keep coming. A commit writes a few
/// dozen pages to the log, so the log stays near SQLite's own default of 1,000 pages.
const CHECKPOINT_EVERY: u64 = 32;
/// How long the last commits wait for their checkpoint once writes stop.
const CHECKPOINT_IDLE: Duration = Duration::from_millis(500);

/// Copies the write-ahead log into the database on a thread of its own, with a connection of
/// its own, so no commit waits for it. Passive checkpoints never block the writer or readers.
#[derive(Debug)]
struct Checkpointer {
    commits: Arc<AtomicU64>,
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(connection: Connection) -> R<Checkpointer> {
        let commits = Arc::new(AtomicU64::new(0));
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let pending = commits.clone();
        let thread = std::thread::Builder::new()
            .name("baton-sqlite-checkpoint".into())
            .spawn(move || {
                let mut done = 0;
                loop {
                    let stop = matches!(woken.recv_timeout(CHECKPOINT_IDLE), Err(RecvTimeoutError::Disconnected));
                    let seen = pending.load(Ordering::Acquire);
                    if seen != done {
                        done = seen;
                        if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                            tracing::warn!(%error, "sqlite checkpoint failed; the next one tries again");
                        }
                    }
                    if stop {
                        return;
                    }
                }
            })
            .map_err(|error| StoreError::Config(format!("start the SQLite checkpoint thread: {error}")))?;
        Ok(Checkpointer { commits, wake: Some(wake), thread: Some(thread) })
    }

    fn committed(&self) {
        let count = self.commits.fetch_add(1, Ordering::AcqRel) + 1;
        if count.is_multiple_of(CHECKPOINT_EVERY)
            && let Some(wake) = &self.wake
        {
            // A full channel means a checkpoint is already due.
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread after a last checkpoint of what was committed.
    fn drop(&mut self) {
        self.wake.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the sqlite checkpoint thread panicked");
        }
    }
}

struct SqliteTx<'a> {
    connection: &'a Connection,
}

// ----- column codecs -----

fn ts(value: Timestamp) -> i64 {
    i64::try_from(value.0).unwrap_or(i64::MAX)
}

fn ts_opt(value: Option<Timestamp>) -> Option<i64> {
    value.map(ts)
}

fn to_ts(value: i64) -> Timestamp {
    Timestamp(u64::try_from(value).unwrap_or(0))
}

fn json_list(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings serializes")
}

fn parse_list(text: &str) -> R<Vec<String>> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(format!("label list {text:?}: {error}")))
}

fn parse_map(text: &str) -> R<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(format!("outputs {text:?}: {error}")))
}

fn parse_name<T>(what: &str, text: &str, parse: fn(&str) -> Option<T>) -> R<T> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown {what} {text:?}")))
}

/// Reads rows with `map`, which may fail with a decoding error.
fn collect<T>(
    statement: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
    map: fn(&Row<'_>) -> R<T>,
) -> R<Vec<T>> {
    let mut rows = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

const RUNNER_COLUMNS: &str = "id, name, labels, pool, capacity, ephemeral, state, reported_free_slots, session_id, \
                              credential_hash, created_at, last_seen_at";

fn runner_row(row: &Row<'_>) -> R<Runner> {
    Ok(Runner {
        id: RunnerId(row.get(0)?),
        name: row.get(1)?,
        labels: parse_list(&row.get::<_, String>(2)?)?,
        pool: row.get(3)?,
        capacity: row.get(4)?,
        ephemeral: row.get(5)?,
        state: parse_name("runner state", &row.get::<_, String>(6)?, RunnerState::parse)?,
        reported_free_slots: row.get(7)?,
        session_id: row.get::<_, Option<i64>>(8)?.map(SessionId),
        credential_hash: row.get(9)?,
        created_at: to_ts(row.get(10)?),
        last_seen_at: to_ts(row.get(11)?),
    })
}

const SESSION_COLUMNS: &str = "id, runner_id, state, opened_at, expires_at";

fn session_row(row: &Row<'_>) -> R<Session> {
    Ok(Session {
        id: SessionId(row.get(0)?),
        runner_id: RunnerId(row.get(1)?),
        state: parse_name("session state", &row.get::<_, String>(2)?, SessionState::parse)?,
        opened_at: to_ts(row.get(3)?),
        expires_at: to_ts(row.get(4)?),
    })
}

const JOB_COLUMNS: &str = "id, name, labels, spec, state, conclusion, reason, max_attempts, attempt, epoch, \
                           cancel_requested, created_at, completed_at, run_id";

fn job_row(row: &Row<'_>) -> R<Job> {
    Ok(Job {
        id: JobId(row.get(0)?),
        name: row.get(1)?,
        labels: parse_list(&row.get::<_, String>(2)?)?,
        spec: row.get(3)?,
        state: parse_name("job state", &row.get::<_, String>(4)?, JobState::parse)?,
        conclusion: match row.get::<_, Option<String>>(5)? {
            Some(text) => Some(parse_name("conclusion", &text, JobConclusion::parse)?),
            None => None,
        },
        reason: row.get(6)?,
        max_attempts: row.get(7)?,
        attempt: AttemptNo(row.get(8)?),
        epoch: LeaseEpoch(u64::try_from(row.get::<_, i64>(9)?).unwrap_or(0)),
        cancel_requested: row.get(10)?,
        created_at: to_ts(row.get(11)?),
        completed_at: row.get::<_, Option<i64>>(12)?.map(to_ts),
        run_id: row.get::<_, Option<i64>>(13)?.map(RunId),
    })
}

const WEBHOOK_COLUMNS: &str = "id, url, events, secrets, ordered, cursor, removed, created_at";

fn webhook_row(row: &Row<'_>) -> R<Webhook> {
    Ok(Webhook {
        id: row.get(0)?,
        url: row.get(1)?,
        events: parse_list(&row.get::<_, String>(2)?)?,
        secrets: row.get(3)?,
        ordered: row.get(4)?,
        cursor: EventSeq(row.get(5)?),
        removed: row.get(6)?,
        created_at: to_ts(row.get(7)?),
    })
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_seq, message_id, event, payload, status, attempts, response_code, \
                                error, latency_ms, next_attempt_at, created_at, completed_at";

fn delivery_row(row: &Row<'_>) -> R<Delivery> {
    Ok(Delivery {
        id: row.get(0)?,
        webhook_id: row.get(1)?,
        event_seq: EventSeq(row.get(2)?),
        message_id: row.get(3)?,
        event: row.get(4)?,
        payload: row.get(5)?,
        status: row.get(6)?,
        attempts: row.get(7)?,
        response_code: row.get(8)?,
        error: row.get(9)?,
        latency_ms: row.get::<_, Option<i64>>(10)?.map(|ms| u64::try_from(ms).unwrap_or(0)),
        next_attempt_at: to_ts(row.get(11)?),
        created_at: to_ts(row.get(12)?),
        completed_at: row.get::<_, Option<i64>>(13)?.map(to_ts),
    })
}

const RUN_COLUMNS: &str = "id, name, file_name, workflow, inputs, secrets, options, state, cancel_requested, \
                           conclusion, created_at, completed_at";

fn run_row(row: &Row<'_>) -> R<Run> {
    Ok(Run {
        id: RunId(row.get(0)?),
        name: row.get(1)?,
        file_name: row.get(2)?,
        workflow: row.get(3)?,
        inputs: row.get(4)?,
        secrets: row.get(5)?,
        options: row.get(6)?,
        state: row.get(7)?,
        cancel_requested: row.get(8)?,
        conclusion: row.get(9)?,
        created_at: to_ts(row.get(10)?),
        completed_at: row.get::<_, Option<i64>>(11)?.map(to_ts),
    })
}

const ATTEMPT_COLUMNS: &str = "job_id, number, state, runner_id, epoch, queued_at, offered_at, accept_deadline, \
                               started_at, lease_deadline, ended_at, result, outputs, summary, reason";

fn attempt_row(row: &Row<'_>) -> R<Attempt> {
    Ok(Attempt {
        job_id: JobId(row.get(0)?),
        number: AttemptNo(row.get(1)?),
        state: parse_name("attempt state", &row.get::<_, String>(2)?, AttemptState::parse)?,
        runner_id: row.get::<_, Option<i64>>(3)?.map(RunnerId),
        epoch: row.get::<_, Option<i64>>(4)?.map(|epoch| LeaseEpoch(u64::try_from(epoch).unwrap_or(0))),
        queued_at: to_ts(row.get(5)?),
        offered_at: row.get::<_, Option<i64>>(6)?.map(to_ts),
        accept_deadline: row.get::<_, Option<i64>>(7)?.map(to_ts),
        started_at: row.get::<_, Option<i64>>(8)?.map(to_ts),
        lease_deadline: row.get::<_, Option<i64>>(9)?.map(to_ts),
        ended_at: row.get::<_, Option<i64>>(10)?.map(to_ts),
        result: match row.get::<_, Option<String>>(11)? {
            Some(text) => Some(parse_name("attempt result", &text, AttemptResult::parse)?),
            None => None,
        },
        outputs: parse_map(&row.get::<_, String>(12)?)?,
        summary: row.get(13)?,
        reason: row.get(14)?,
    })
}

fn attempt_with_labels_row(row: &Row<'_>) -> R<(Attempt, Vec<String>)> {
    let attempt = attempt_row(row)?;
    let labels = parse_list(&row.get::<_, String>(15)?)?;
    Ok((attempt, labels))
}

const TOKEN_COLUMNS: &str = "id, hash, labels, pool, expires_at, max_uses, uses, revoked, created_at";

fn token_row(row: &Row<'_>) -> R<RegistrationToken> {
    Ok(RegistrationToken {
        id: row.get(0)?,
        hash: row.get(1)?,
        labels: parse_list(&row.get::<_, String>(2)?)?,
        pool: row.get(3)?,
        expires_at: to_ts(row.get(4)?),
        max_uses: row.get(5)?,
        uses: row.get(6)?,
        revoked: row.get(7)?,
        created_at: to_ts(row.get(8)?),
    })
}

fn jit_row(row: &Row<'_>) -> R<JitConfig> {
    Ok(JitConfig {
        hash: row.get(0)?,
        runner_id: RunnerId(row.get(1)?),
        expires_at: to_ts(row.get(2)?),
        used_at: row.get::<_, Option<i64>>(3)?.map(to_ts),
        created_at: to_ts(row.get(4)?),
    })
}

fn message_row(row: &Row<'_>) -> R<(MessageId, Message)> {
    let id = MessageId(row.get(0)?);
    let kind: String = row.get(1)?;
    let job = row.get::<_, Option<i64>>(2)?.map(JobId);
    let attempt = row.get::<_, Option<u32>>(3)?.map(AttemptNo);
    let epoch = row.get::<_, Option<i64>>(4)?.map(|epoch| LeaseEpoch(u64::try_from(epoch).unwrap_or(0)));
    let message = match (kind.as_str(), job, attempt, epoch) {
        ("job_offer", Some(job_id), Some(attempt), Some(epoch)) => Message::JobOffer { job_id, attempt, epoch },
        ("cancel", Some(job_id), Some(attempt), Some(epoch)) => Message::Cancel { job_id, attempt, epoch },
        ("drain", ..) => Message::Drain,
        ("retire", ..) => Message::Retire,
        _ => return Err(StoreError::Corrupt(format!("message {id}: kind {kind:?} with missing fields"))),
    };
    Ok((id, message))
}

fn event_row(row: &Row<'_>) -> R<Event> {
    Ok(Event {
        seq: EventSeq(row.get(0)?),
        at: to_ts(row.get(1)?),
        kind: parse_name("event kind", &row.get::<_, String>(2)?, EventKind::parse)?,
        job_id: row.get::<_, Option<i64>>(3)?.map(JobId),
        attempt: row.get::<_, Option<u32>>(4)?.map(AttemptNo),
        runner_id: row.get::<_, Option<i64>>(5)?.map(RunnerId),
        data: row.get(6)?,
    })
}

fn chunk_row(row: &Row<'_>) -> R<LogChunk> {
    Ok(LogChunk { seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0), at: to_ts(row.get(1)?), data: row.get(2)? })
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl SqliteTx<'_> {
    fn one<T>(&self, sql: &str, params: impl rusqlite::Params, map: fn(&Row<'_>) -> R<T>) -> R<Option<T>> {
        let mut statement = self.connection.prepare_cached(sql)?;
        let mut rows = statement.query(params)?;
        match rows.next()? {
            Some(row) => Ok(Some(map(row)?)),
            None => Ok(None),
        }
    }

    fn many<T>(&self, sql: &str, params: impl rusqlite::Params, map: fn(&Row<'_>) -> R<T>) -> R<Vec<T>> {
        let mut statement = self.connection.prepare_cached(sql)?;
        collect(&mut statement, params, map)
    }

    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> R<usize> {
        let mut statement = self.connection.prepare_cached(sql)?;
        Ok(statement.execute(params)?)
    }

    fn insert_returning_id(&self, sql: &str, params: impl rusqlite::Params) -> R<i64> {
        let mut statement = self.connection.prepare_cached(sql)?;
        Ok(statement.query_row(params, |row| row.get(0))?)
    }

    fn exec_one(&self, what: &str, sql: &str, params: impl rusqlite::Params) -> R<()> {
        match self.exec(sql, params)? {
            1 => Ok(()),
            n => Err(StoreError::Corrupt(format!("update of {what} changed {n} rows"))),
        }
    }
}

impl Tx for SqliteTx<'_> {
    fn meta_get(&mut self, key: &str) -> R<Option<String>> {
        let mut statement = self.connection.prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
        Ok(statement.query_row(params![key], |row| row.get(0)).optional()?)
    }

    fn meta_set(&mut self, key: &str, value: &str) -> R<()> {
        self.exec(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    fn registration_token_insert(&mut self, token: &RegistrationToken) -> R<i64> {
        self.insert_returning_id(
            "INSERT INTO registration_tokens (hash, labels, pool, expires_at, max_uses, uses, revoked, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
            params![
                token.hash,
                json_list(&token.labels),
                token.pool,
                ts(token.expires_at),
                token.max_uses,
                token.uses,
                token.revoked,
                ts(token.created_at)
            ],
        )
    }

    fn registration_token_by_hash(&mut self, hash: &str) -> R<Option<RegistrationToken>> {
        self.one(&format!("SELECT {TOKEN_COLUMNS} FROM registration_tokens WHERE hash = ?1"), params![hash], token_row)
    }

    fn registration_token_update(&mut self, token: &RegistrationToken) -> R<()> {
        self.exec_one(
            "registration token",
            "UPDATE registration_tokens SET uses = ?2, revoked = ?3 WHERE id = ?1",
            params![token.id, token.uses, token.revoked],
        )
    }

    fn jit_insert(&mut self, jit: &JitConfig) -> R<()> {
        self.exec(
            "INSERT INTO jit_configs (hash, runner_id, expires_at, used_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![jit.hash, jit.runner_id.0, ts(jit.expires_at), ts_opt(jit.used_at), ts(jit.created_at)],
        )?;
        Ok(())
    }

    fn jit_by_hash(&mut self, hash: &str) -> R<Option<JitConfig>> {
        self.one(
            "SELECT hash, runner_id, expires_at, used_at, created_at FROM jit_configs WHERE hash = ?1",
            params![hash],
            jit_row,
        )
    }

    fn jit_update(&mut self, jit: &JitConfig) -> R<()> {
        self.exec_one(
            "jit config",
            "UPDATE jit_configs SET used_at = ?2 WHERE hash = ?1",
            params![jit.hash, ts_opt(jit.used_at)],
        )
    }

    fn runner_insert(&mut self, runner: &Runner) -> R<RunnerId> {
        Ok(RunnerId(self.insert_returning_id(
            "INSERT INTO runners (name, labels, pool, capacity, ephemeral, state, reported_free_slots, session_id, \
             credential_hash, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
            params![
                runner.name,
                json_list(&runner.labels),
                runner.pool,
                runner.capacity,
                runner.ephemeral,
                runner.state.to_string(),
                runner.reported_free_slots,
                runner.session_id.map(|id| id.0),
                runner.credential_hash,
                ts(runner.created_at),
                ts(runner.last_seen_at)
            ],
        )?))
    }

    fn runner_update(&mut self, runner: &Runner) -> R<()> {
        self.exec_one(
            "runner",
            "UPDATE runners SET name = ?2, labels = ?3, pool = ?4, capacity = ?5, ephemeral = ?6, state = ?7, \
             reported_free_slots = ?8, session_id = ?9, credential_hash = ?10, last_seen_at = ?11 WHERE id = ?1",
            params![
                runner.id.0,
                runner.name,
                json_list(&runner.labels),
                runner.pool,
                runner.capacity,
                runner.ephemeral,
                runner.state.to_string(),
                runner.reported_free_slots,
                runner.session_id.map(|id| id.0),
                runner.credential_hash,
                ts(runner.last_seen_at)
            ],
        )
    }

    fn runner_get(&mut self, id: RunnerId) -> R<Option<Runner>> {
        self.one(&format!("SELECT {RUNNER_COLUMNS} FROM runners WHERE id = ?1"), params![id.0], runner_row)
    }

    fn runner_by_credential(&mut self, hash: &str) -> R<Option<Runner>> {
        self.one(&format!("SELECT {RUNNER_COLUMNS} FROM runners WHERE credential_hash = ?1"), params![hash], runner_row)
    }

    fn runner_by_name(&mut self, name: &str) -> R<Option<Runner>> {
        self.one(
            &format!("SELECT {RUNNER_COLUMNS} FROM runners WHERE name = ?1 AND state <> 'gone'"),
            params![name],
            runner_row,
        )
    }

    fn runners_named(&mut self, name: &str) -> R<Vec<Runner>> {
        self.many(
            &format!("SELECT {RUNNER_COLUMNS} FROM runners WHERE name = ?1 ORDER BY id"),
            params![name],
            runner_row,
        )
    }

    fn runners_page(&mut self, after: RunnerId, limit: usize) -> R<Vec<Runner>> {
        self.many(
            &format!("SELECT {RUNNER_COLUMNS} FROM runners WHERE id > ?1 ORDER BY id LIMIT ?2"),
            params![after.0, limit_param(limit)],
            runner_row,
        )
    }

    fn runners_of_pool(&mut self, pool: &str) -> R<Vec<Runner>> {
        self.many(
            &format!("SELECT {RUNNER_COLUMNS} FROM runners WHERE pool = ?1 AND state <> 'gone' ORDER BY id"),
            params![pool],
            runner_row,
        )
    }

    fn runner_activity(&mut self, runner_id: RunnerId) -> R<(u32, Option<Timestamp>)> {
        let mut statement =
            self.connection.prepare_cached("SELECT COUNT(*), MAX(ended_at) FROM attempts WHERE runner_id = ?1")?;
        let (count, last): (i64, Option<i64>) =
            statement.query_row(params![runner_id.0], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok((u32::try_from(count).unwrap_or(u32::MAX), last.map(to_ts)))
    }

    fn runners_with_reported_slots(&mut self) -> R<Vec<Runner>> {
        self.many(
            &format!(
                "SELECT {RUNNER_COLUMNS} FROM runners WHERE state = 'active' AND reported_free_slots > 0 ORDER BY id"
            ),
            [],
            runner_row,
        )
    }

    fn session_insert(&mut self, session: &Session) -> R<SessionId> {
        Ok(SessionId(self.insert_returning_id(
            "INSERT INTO sessions (runner_id, state, opened_at, expires_at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            params![session.runner_id.0, session.state.to_string(), ts(session.opened_at), ts(session.expires_at)],
        )?))
    }

    fn session_update(&mut self, session: &Session) -> R<()> {
        self.exec_one(
            "session",
            "UPDATE sessions SET state = ?2, expires_at = ?3 WHERE id = ?1",
            params![session.id.0, session.state.to_string(), ts(session.expires_at)],
        )
    }

    fn session_get(&mut self, id: SessionId) -> R<Option<Session>> {
        self.one(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"), params![id.0], session_row)
    }

    fn sessions_expired(&mut self, now: Timestamp) -> R<Vec<Session>> {
        self.many(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE state = 'open' AND expires_at < ?1 ORDER BY id"),
            params![ts(now)],
            session_row,
        )
    }

    fn sessions_open(&mut self) -> R<Vec<Session>> {
        self.many(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE state = 'open' ORDER BY id"), [], session_row)
    }

    fn job_insert(&mut self, job: &Job) -> R<JobId> {
        Ok(JobId(self.insert_returning_id(
            "INSERT INTO jobs (name, labels, spec, state, conclusion, reason, max_attempts, attempt, epoch, \
             cancel_requested, created_at, completed_at, run_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING id",
            params![
                job.name,
                json_list(&job.labels),
                job.spec,
                job.state.to_string(),
                job.conclusion.map(|conclusion| conclusion.to_string()),
                job.reason,
                job.max_attempts,
                job.attempt.0,
                i64::try_from(job.epoch.0).unwrap_or(i64::MAX),
                job.cancel_requested,
                ts(job.created_at),
                ts_opt(job.completed_at),
                job.run_id.map(|id| id.0)
            ],
        )?))
    }

    fn webhook_insert(&mut self, webhook: &Webhook) -> R<i64> {
        self.insert_returning_id(
            "INSERT INTO webhooks (url, events, secrets, ordered, cursor, removed, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            params![
                webhook.url,
                json_list(&webhook.events),
                webhook.secrets,
                webhook.ordered,
                webhook.cursor.0,
                webhook.removed,
                ts(webhook.created_at)
            ],
        )
    }

    fn webhook_update(&mut self, webhook: &Webhook) -> R<()> {
        self.exec_one(
            "webhook",
            "UPDATE webhooks SET url = ?2, events = ?3, secrets = ?4, ordered = ?5, cursor = ?6, removed = ?7 WHERE id = ?1",
            params![
                webhook.id,
                webhook.url,
                json_list(&webhook.events),
                webhook.secrets,
                webhook.ordered,
                webhook.cursor.0,
                webhook.removed
            ],
        )
    }

    fn webhook_get(&mut self, id: i64) -> R<Option<Webhook>> {
        self.one(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1"), params![id], webhook_row)
    }

    fn webhooks_active(&mut self) -> R<Vec<Webhook>> {
        self.many(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE removed = 0 ORDER BY id"), [], webhook_row)
    }

    fn delivery_insert(&mut self, delivery: &Delivery) -> R<i64> {
        self.insert_returning_id(
            &format!(
                "INSERT INTO webhook_deliveries ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING id",
                DELIVERY_COLUMNS.trim_start_matches("id, ")
            ),
            params![
                delivery.webhook_id,
                delivery.event_seq.0,
                delivery.message_id,
                delivery.event,
                delivery.payload,
                delivery.status,
                delivery.attempts,
                delivery.response_code,
                delivery.error,
                delivery.latency_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                ts(delivery.next_attempt_at),
                ts(delivery.created_at),
                ts_opt(delivery.completed_at)
            ],
        )
    }

    fn delivery_update(&mut self, delivery: &Delivery) -> R<()> {
        self.exec_one(
            "delivery",
            "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, response_code = ?4, error = ?5, latency_ms = ?6, \
             next_attempt_at = ?7, completed_at = ?8 WHERE id = ?1",
            params![
                delivery.id,
                delivery.status,
                delivery.attempts,
                delivery.response_code,
                delivery.error,
                delivery.latency_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                ts(delivery.next_attempt_at),
                ts_opt(delivery.completed_at)
            ],
        )
    }

    fn delivery_get(&mut self, id: i64) -> R<Option<Delivery>> {
        self.one(&format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1"), params![id], delivery_row)
    }

    fn deliveries_of(&mut self, webhook_id: i64, after: i64, limit: usize) -> R<Vec<Delivery>> {
        self.many(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ),
            params![webhook_id, after, limit_param(limit)],
            delivery_row,
        )
    }

    fn deliveries_pending(&mut self, webhook_id: i64, limit: usize) -> R<Vec<Delivery>> {
        self.many(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?1 AND status = 'pending' \
                 ORDER BY id LIMIT ?2"
            ),
            params![webhook_id, limit_param(limit)],
            delivery_row,
        )
    }

    fn queue_depth_by_labels(&mut self, limit: usize) -> R<Vec<(Vec<String>, u64)>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT jobs.labels, COUNT(*) AS depth FROM attempts JOIN jobs ON jobs.id = attempts.job_id \
             WHERE attempts.state = 'queued' GROUP BY jobs.labels ORDER BY depth DESC, jobs.labels LIMIT ?1",
        )?;
        let rows = statement
            .query_map(params![limit_param(limit)], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (labels, depth) = row?;
            out.push((parse_list(&labels)?, u64::try_from(depth).unwrap_or(0)));
        }
        Ok(out)
    }

    fn runner_counts(&mut self) -> R<Vec<(String, u64)>> {
        let mut statement =
            self.connection.prepare_cached("SELECT state, COUNT(*) FROM runners GROUP BY state ORDER BY state")?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (state, count) = row?;
            out.push((state, u64::try_from(count).unwrap_or(0)));
        }
        Ok(out)
    }

    fn run_insert(&mut self, run: &Run) -> R<RunId> {
        Ok(RunId(self.insert_returning_id(
            "INSERT INTO runs (name, file_name, workflow, inputs, secrets, options, state, cancel_requested, conclusion, \
             created_at, completed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
            params![
                run.name,
                run.file_name,
                run.workflow,
                run.inputs,
                run.secrets,
                run.options,
                run.state,
                run.cancel_requested,
                run.conclusion,
                ts(run.created_at),
                ts_opt(run.completed_at)
            ],
        )?))
    }

    fn run_update(&mut self, run: &Run) -> R<()> {
        self.exec_one(
            "run",
            "UPDATE runs SET secrets = ?2, state = ?3, cancel_requested = ?4, conclusion = ?5, completed_at = ?6 \
             WHERE id = ?1",
            params![run.id.0, run.secrets, run.state, run.cancel_requested, run.conclusion, ts_opt(run.completed_at)],
        )
    }

    fn run_get(&mut self, id: RunId) -> R<Option<Run>> {
        self.one(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"), params![id.0], run_row)
    }

    fn runs_page(&mut self, before: RunId, limit: usize) -> R<Vec<Run>> {
        self.many(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id < ?1 ORDER BY id DESC LIMIT ?2"),
            params![before.0, limit_param(limit)],
            run_row,
        )
    }

    fn job_update(&mut self, job: &Job) -> R<()> {
        self.exec_one(
            "job",
            "UPDATE jobs SET state = ?2, conclusion = ?3, reason = ?4, attempt = ?5, epoch = ?6, cancel_requested = ?7, \
             completed_at = ?8 WHERE id = ?1",
            params![
                job.id.0,
                job.state.to_string(),
                job.conclusion.map(|conclusion| conclusion.to_string()),
                job.reason,
                job.attempt.0,
                i64::try_from(job.epoch.0).unwrap_or(i64::MAX),
                job.cancel_requested,
                ts_opt(job.completed_at)
            ],
        )
    }

    fn job_get(&mut self, id: JobId) -> R<Option<Job>> {
        self.one(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), params![id.0], job_row)
    }

    fn jobs_page(&mut self, after: JobId, limit: usize) -> R<Vec<Job>> {
        self.many(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?2"),
            params![after.0, limit_param(limit)],
            job_row,
        )
    }

    fn attempt_insert(&mut self, attempt: &Attempt) -> R<()> {
        self.exec(
            &format!(
                "INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ),
            attempt_params(attempt),
        )?;
        Ok(())
    }

    fn attempt_update(&mut self, attempt: &Attempt) -> R<()> {
        self.exec_one(
            "attempt",
            "UPDATE attempts SET state = ?3, runner_id = ?4, epoch = ?5, queued_at = ?6, offered_at = ?7, \
             accept_deadline = ?8, started_at = ?9, lease_deadline = ?10, ended_at = ?11, result = ?12, outputs = ?13, \
             summary = ?14, reason = ?15 WHERE job_id = ?1 AND number = ?2",
            attempt_params(attempt),
        )
    }

    fn attempt_get(&mut self, job_id: JobId, number: AttemptNo) -> R<Option<Attempt>> {
        self.one(
            &format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ?1 AND number = ?2"),
            params![job_id.0, number.0],
            attempt_row,
        )
    }

    fn attempts_of_job(&mut self, job_id: JobId) -> R<Vec<Attempt>> {
        self.many(
            &format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ?1 ORDER BY number"),
            params![job_id.0],
            attempt_row,
        )
    }

    fn attempts_queued(&mut self, after: Option<QueueCursor>, limit: usize) -> R<Vec<(Attempt, Vec<String>)>> {
        let columns = ATTEMPT_COLUMNS.split(", ").map(|column| format!("a.{column}")).collect::<Vec<_>>().join(", ");
        let (queued_at, job_id, number) = match after {
            Some(cursor) => (ts(cursor.queued_at), cursor.job_id.0, i64::from(cursor.number.0)),
            None => (-1, -1, -1),
        };
        self.many(
            &format!(
                "SELECT {columns}, j.labels FROM attempts a JOIN jobs j ON j.id = a.job_id \
                 WHERE a.state = 'queued' AND (a.queued_at, a.job_id, a.number) > (?1, ?2, ?3) \
                 ORDER BY a.queued_at, a.job_id, a.number LIMIT ?4"
            ),
            params![queued_at, job_id, number, limit_param(limit)],
            attempt_with_labels_row,
        )
    }

    fn attempts_held(&mut self, runner_id: RunnerId) -> R<Vec<Attempt>> {
        self.many(
            &format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE runner_id = ?1 AND state IN ('offered', 'running') \
                 ORDER BY job_id, number"
            ),
            params![runner_id.0],
            attempt_row,
        )
    }

    fn attempts_offer_expired(&mut self, now: Timestamp) -> R<Vec<Attempt>> {
        self.many(
            &format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts INDEXED BY attempts_offer_deadline \
                 WHERE state = 'offered' AND accept_deadline < ?1 ORDER BY job_id, number"
            ),
            params![ts(now)],
            attempt_row,
        )
    }

    fn attempts_lease_expired(&mut self, now: Timestamp) -> R<Vec<Attempt>> {
        self.many(
            &format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts INDEXED BY attempts_lease_deadline \
                 WHERE state = 'running' AND lease_deadline < ?1 ORDER BY job_id, number"
            ),
            params![ts(now)],
            attempt_row,
        )
    }

    fn attempts_live(&mut self) -> R<Vec<Attempt>> {
        self.many(
            &format!(
                "SELECT * FROM (\
                   SELECT {ATTEMPT_COLUMNS} FROM attempts INDEXED BY attempts_offer_deadline WHERE state = 'offered' \
                   UNION ALL \
                   SELECT {ATTEMPT_COLUMNS} FROM attempts INDEXED BY attempts_lease_deadline WHERE state = 'running'\
                 ) ORDER BY job_id, number"
            ),
            [],
            attempt_row,
        )
    }

    fn message_insert(&mut self, runner_id: RunnerId, message: &Message, now: Timestamp) -> R<MessageId> {
        let (kind, job, attempt, epoch) = match *message {
            Message::JobOffer { job_id, attempt, epoch } => {
                ("job_offer", Some(job_id.0), Some(attempt.0), Some(epoch.0))
            }
            Message::Cancel { job_id, attempt, epoch } => ("cancel", Some(job_id.0), Some(attempt.0), Some(epoch.0)),
            Message::Drain => ("drain", None, None, None),
            Message::Retire => ("retire", None, None, None),
        };
        let epoch = epoch.map(|epoch| i64::try_from(epoch).unwrap_or(i64::MAX));
        Ok(MessageId(self.insert_returning_id(
            "INSERT INTO messages (runner_id, kind, job_id, attempt, epoch, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             RETURNING id",
            params![runner_id.0, kind, job, attempt, epoch, ts(now)],
        )?))
    }

    fn messages_after(&mut self, runner_id: RunnerId, after: MessageId, limit: usize) -> R<Vec<(MessageId, Message)>> {
        self.many(
            "SELECT id, kind, job_id, attempt, epoch FROM messages WHERE runner_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            params![runner_id.0, after.0, limit_param(limit)],
            message_row,
        )
    }

    fn messages_delete_upto(&mut self, runner_id: RunnerId, upto: MessageId) -> R<()> {
        self.exec("DELETE FROM messages WHERE runner_id = ?1 AND id <= ?2", params![runner_id.0, upto.0])?;
        Ok(())
    }

    fn message_delete(&mut self, id: MessageId) -> R<()> {
        self.exec("DELETE FROM messages WHERE id = ?1", params![id.0])?;
        Ok(())
    }

    fn log_last_seq(&mut self, job_id: JobId, attempt: AttemptNo) -> R<u64> {
        let last: Option<i64> = self
            .connection
            .prepare_cached("SELECT MAX(seq) FROM log_chunks WHERE job_id = ?1 AND attempt = ?2")?
            .query_row(params![job_id.0, attempt.0], |row| row.get(0))?;
        Ok(last.map(|seq| u64::try_from(seq).unwrap_or(0)).unwrap_or(0))
    }

    fn log_get(&mut self, job_id: JobId, attempt: AttemptNo, seq: u64) -> R<Option<LogChunk>> {
        self.one(
            "SELECT seq, at, data FROM log_chunks WHERE job_id = ?1 AND attempt = ?2 AND seq = ?3",
            params![job_id.0, attempt.0, i64::try_from(seq).unwrap_or(i64::MAX)],
            chunk_row,
        )
    }

    fn log_insert(&mut self, job_id: JobId, attempt: AttemptNo, chunk: &LogChunk) -> R<()> {
        self.exec(
            "INSERT INTO log_chunks (job_id, attempt, seq, at, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![job_id.0, attempt.0, i64::try_from(chunk.seq).unwrap_or(i64::MAX), ts(chunk.at), chunk.data],
        )?;
        Ok(())
    }

    fn logs_after(&mut self, job_id: JobId, attempt: AttemptNo, after: u64, limit: usize) -> R<Vec<LogChunk>> {
        self.many(
            "SELECT seq, at, data FROM log_chunks WHERE job_id = ?1 AND attempt = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            params![job_id.0, attempt.0, i64::try_from(after).unwrap_or(i64::MAX), limit_param(limit)],
            chunk_row,
        )
    }

    fn event_insert(&mut self, event: &Event) -> R<EventSeq> {
        Ok(EventSeq(self.insert_returning_id(
            "INSERT INTO events (at, kind, job_id, attempt, runner_id, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq",
            params![
                ts(event.at),
                event.kind.to_string(),
                event.job_id.map(|id| id.0),
                event.attempt.map(|number| number.0),
                event.runner_id.map(|id| id.0),
                event.data
            ],
        )?))
    }

    fn events_after(&mut self, after: EventSeq, limit: usize) -> R<Vec<Event>> {
        self.many(
            "SELECT seq, at, kind, job_id, attempt, runner_id, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![after.0, limit_param(limit)],
            event_row,
        )
    }

    fn event_last_seq(&mut self) -> R<EventSeq> {
        let last: Option<i64> =
            self.connection.prepare_cached("SELECT MAX(seq) FROM events")?.query_row([], |row| row.get(0))?;
        Ok(EventSeq(last.unwrap_or(0)))
    }
}

fn attempt_params(attempt: &Attempt) -> impl rusqlite::Params {
    (
        attempt.job_id.0,
        attempt.number.0,
        attempt.state.to_string(),
        attempt.runner_id.map(|id| id.0),
        attempt.epoch.map(|epoch| i64::try_from(epoch.0).unwrap_or(i64::MAX)),
        ts(attempt.queued_at),
        ts_opt(attempt.offered_at),
        ts_opt(attempt.accept_deadline),
        ts_opt(attempt.started_at),
        ts_opt(attempt.lease_deadline),
        ts_opt(attempt.ended_at),
        attempt.result.map(|result| result.to_string()),
        serde_json::to_string(&attempt.outputs).expect("a string map serializes"),
        attempt.summary.clone(),
        attempt.reason.clone(),
    )
}

impl crate::Store {
    /// Opens the SQLite store at `path`.
    pub fn open_sqlite(path: &Path, durability: Durability, timeouts: baton_core::Timeouts) -> R<crate::Store> {
        Ok(crate::Store::new(Box::new(SqliteBackend::open(path, durability)?), timeouts))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn open_scratch() -> (tempfile::TempDir, std::path::PathBuf, SqliteBackend) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("baton.db");
        let backend = SqliteBackend::open(&path, Durability::Normal).expect("the store opens");
        (dir, path, backend)
    }

    /// A script that sets `key` to `value`, then answers as `then` does.
    fn sets(key: &'static str, value: &'static str, then: fn() -> R<bool>) -> impl Fn(&mut dyn Tx) -> R<bool> + Sync {
        move |tx| {
            tx.meta_set(key, value)?;
            then()
        }
    }

    /// Commits leave their pages in the log; the checkpoint thread, not a commit, copies them
    /// into the database file while the store stays open.
    #[test]
    fn committed_pages_reach_the_database_file_without_a_commit_copying_them() {
        let (_dir, path, backend) = open_scratch();
        let value = "x".repeat(2048);
        let size = || std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
        let before = size();
        for index in 0..300 {
            backend
                .write(&mut |tx| {
                    tx.meta_set(&format!("test.{index}"), &value)?;
                    Ok(true)
                })
                .expect("the write commits");
        }
        // 300 values of 2 KiB: at least 600 KiB once checkpointed.
        let deadline = Instant::now() + Duration::from_secs(20);
        while size() < before + 600 * 1024 {
            assert!(Instant::now() < deadline, "the database file stayed at {} bytes", size());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs two writes on `backend` so that they share a commit: the first one's script waits
    /// until the second is queued for the writer. Returns both outcomes (the second's is `Err`
    /// if its script panicked).
    fn two_writes_in_one_group(
        backend: &SqliteBackend,
        first: &(dyn Fn(&mut dyn Tx) -> R<bool> + Sync),
        second: &(dyn Fn(&mut dyn Tx) -> R<bool> + Sync),
    ) -> (R<()>, std::thread::Result<R<()>>) {
        std::thread::scope(|scope| {
            let first = scope.spawn(|| {
                backend.write(&mut |tx| {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while backend.queued.load(Ordering::Acquire) == 0 {
                        assert!(Instant::now() < deadline, "the second write never queued");
                        std::thread::yield_now();
                    }
                    first(tx)
                })
            });
            // The first write holds the writer before the second asks for it.
            let deadline = Instant::now() + Duration::from_secs(20);
            while backend.writer.try_lock().is_ok() {
                assert!(Instant::now() < deadline, "the first write never took the writer");
                std::thread::yield_now();
            }
            let second = scope.spawn(|| backend.write(&mut |tx| second(tx))).join();
            (first.join().expect("the first write does not panic"), second)
        })
    }

    fn value(path: &Path, key: &str) -> Option<String> {
        let connection = Connection::open(path).expect("a second connection");
        connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()
            .expect("meta can be read")
    }

    /// A write that finds another queued leaves its transaction open; the other runs in it and
    /// commits both, once. A script of the group that fails rolls back only its own changes.
    #[test]
    fn queued_writes_share_one_commit_and_a_failing_one_rolls_back_alone() {
        let (_dir, path, backend) = open_scratch();
        let commits = || backend.checkpointer.commits.load(Ordering::Acquire);
        let before = commits();
        let (first, second) =
            two_writes_in_one_group(&backend, &sets("one", "kept", || Ok(true)), &sets("two", "kept", || Ok(true)));
        first.expect("the first write commits");
        second.expect("no panic").expect("the second write commits");
        assert_eq!(commits() - before, 1, "two writes, one commit");
        assert_eq!(value(&path, "one").as_deref(), Some("kept"));
        assert_eq!(value(&path, "two").as_deref(), Some("kept"));

        let before = commits();
        let (first, second) = two_writes_in_one_group(
            &backend,
            &sets("first", "kept", || Ok(true)),
            &sets("second", "rolled back", || Ok(false)),
        );
        first.expect("the first write commits");
        second.expect("no panic").expect("a script that rolls back is not an error");
        assert_eq!(commits() - before, 1, "two writes, one commit");
        assert_eq!(value(&path, "first").as_deref(), Some("kept"));
        assert_eq!(value(&path, "second"), None, "the rolled-back script left nothing");

        let (first, second) = two_writes_in_one_group(
            &backend,
            &sets("third", "failed", || Err(StoreError::Corrupt("the script fails".into()))),
            &sets("fourth", "kept", || Ok(true)),
        );
        assert!(matches!(first, Err(StoreError::Corrupt(_))), "the first script's own error: {first:?}");
        second.expect("no panic").expect("the second write commits");
        assert_eq!(value(&path, "third"), None);
        assert_eq!(value(&path, "fourth").as_deref(), Some("kept"));
    }

    /// A script that panics in a group fails the writes waiting for the group's commit, and
    /// none of the group's changes is committed; the next write starts afresh.
    #[test]
    fn a_panicking_script_fails_its_group_and_commits_nothing() {
        let (_dir, path, backend) = open_scratch();
        let (first, second) = two_writes_in_one_group(
            &backend,
            &sets("first", "lost", || Ok(true)),
            &sets("second", "lost", || panic!("the script panics")),
        );
        assert!(second.is_err(), "the second script panicked");
        assert!(matches!(first, Err(StoreError::GroupCommit(_))), "the first write fails with its group: {first:?}");
        assert_eq!(value(&path, "first"), None, "the group's changes were rolled back");
        assert_eq!(value(&path, "second"), None);
        backend
            .write(&mut |tx| {
                tx.meta_set("after", "kept")?;
                Ok(true)
            })
            .expect("a later write commits");
        assert_eq!(value(&path, "after").as_deref(), Some("kept"));
    }

    /// The statements the attempt queries ran, as the tracer saw them.
    static TRACED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    fn record(event: rusqlite::trace::TraceEvent<'_>) {
        if let rusqlite::trace::TraceEvent::Stmt(statement, _) = event {
            TRACED.lock().expect("the trace lock").push(statement.sql().into_owned());
        }
    }

    /// No attempt query reads the whole attempts table: the sweeps, the dispatch queue and the
    /// outage extension each search an index, or scan one that holds only their state. Most
    /// attempts are finished, so a full scan would grow with the history.
    #[test]
    fn attempt_queries_search_indexes_instead_of_scanning_every_attempt() {
        let (_dir, path, backend) = open_scratch();
        for reader in &backend.readers {
            reader
                .lock()
                .expect("a reader")
                .trace_v2(rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT, Some(record));
        }
        let now = Timestamp(1_000);
        backend
            .read(&mut |tx| {
                tx.attempts_queued(None, 32)?;
                tx.attempts_offer_expired(now)?;
                tx.attempts_lease_expired(now)?;
                tx.attempts_live()?;
                tx.attempts_held(RunnerId(1))?;
                tx.runner_activity(RunnerId(1))?;
                tx.queue_depth_by_labels(10)?;
                Ok(())
            })
            .expect("the queries run");
        let statements: Vec<String> = TRACED.lock().expect("the trace lock").clone();
        let queries: Vec<&String> = statements.iter().filter(|sql| sql.contains("FROM attempts")).collect();
        assert_eq!(queries.len(), 7, "every attempt query was traced: {statements:#?}");
        let explain = Connection::open(&path).expect("a second connection");
        for sql in queries {
            let plan: Vec<String> = explain
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .and_then(|mut statement| {
                    let unbound = std::iter::repeat_n(rusqlite::types::Null, statement.parameter_count());
                    statement.query_map(rusqlite::params_from_iter(unbound), |row| row.get::<_, String>(3))?.collect()
                })
                .expect("the plan can be read");
            let full_scan = plan.iter().any(|step| {
                let scanned = step.strip_prefix("SCAN attempts").or_else(|| step.strip_prefix("SCAN a"));
                scanned.is_some_and(|rest| {
                    (rest.is_empty() || rest.starts_with(' ')) && !rest.contains(" INDEX attempts_")
                })
            });
            assert!(!full_scan, "a full scan of the attempts table:\n{sql}\n{plan:#?}");
        }
    }
}
