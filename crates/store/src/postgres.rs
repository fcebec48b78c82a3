//! The PostgreSQL backend: for fleets that outgrow one machine, on the engine teams already run,
//! served by several `baton server` replicas at once.
//!
//! **Writes** run one at a time across every replica: each write transaction first takes one
//! transaction-scoped advisory lock (`pg_advisory_xact_lock`), at `READ COMMITTED` isolation, so
//! every statement after the lock sees every write committed before it. The scripts therefore
//! keep the meaning they have on SQLite (one writer; a predicate and its effect commit
//! together, as if alone), sweepers are safe to run on every replica at once, and event
//! sequence numbers become visible in order, so a reader that follows events by sequence never
//! skips one. (`SERIALIZABLE` alone also keeps the scripts' meaning, but under contention it
//! aborts and retries transactions without bound, and commits sequence numbers out of order.)
//! Serialization failures and deadlocks are retried all the same.
//!
//! **Reads** run in `REPEATABLE READ READ ONLY` snapshots: a consistent prefix of the writes.
//!
//! **Wake-ups across replicas.** A write that messaged runners, made runners gone or appended
//! events also sends `NOTIFY baton_commits` with what it did (PostgreSQL delivers it only if the
//! transaction commits); every replica `LISTEN`s on its own connection and hands what the others
//! did to its commit observer, so a long-poll on one replica wakes when another assigns to it.
//! After the listening connection was lost, the observer is told that anything may have
//! changed.
//!
//! The schema mirrors SQLite's (`migrations/postgres`): integers are `BIGINT`, flags `BOOLEAN`,
//! lists and maps JSON text. The SQL of each statement is the SQLite one with `?N` placeholders
//! turned into `$N`; statements are prepared once per connection, and a connection the server
//! closed is opened again on next use.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_core::{
    Attempt, AttemptNo, AttemptResult, AttemptState, Delivery, EventKind, EventSeq, JitConfig, Job, JobConclusion,
    JobId, JobState, LeaseEpoch, Message, MessageId, RegistrationToken, Run, RunId, Runner, RunnerId, RunnerState,
    Session, SessionId, SessionState, Timestamp, Webhook,
};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Statement};

use crate::pg_connect::Connector;
use crate::tx::{Backend, Event, LogChunk, QueueCursor, Tx};
use crate::{CommitObserver, Effects, StoreError, Wake};

type R<T> = std::result::Result<T, StoreError>;

/// Migrations in order; the `schema_version` table records how many were applied.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/postgres/0001_init.sql")];
/// Reader connections kept open for read transactions.
const READERS: usize = 4;
/// Writer connections: concurrent write transactions, serialized by PostgreSQL.
const WRITERS: usize = 4;
/// Attempts of a write transaction that PostgreSQL aborted as a serialization failure.
const WRITE_ATTEMPTS: u32 = 60;
/// Runner ids one announcement lists at most; a longer one says "anything may have changed"
/// (PostgreSQL bounds a payload at 8000 bytes).
const ANNOUNCED_RUNNERS_MAX: usize = 200;

/// One connection with its prepared statements.
struct Connection {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Connection").field("statements", &self.statements.len()).finish()
    }
}

#[derive(Debug)]
pub struct PostgresBackend {
    connector: Arc<Connector>,
    writers: Vec<Mutex<Connection>>,
    readers: Vec<Mutex<Connection>>,
    /// This process's mark on its announcements, so its own are not heard as another's.
    replica: u64,
    /// The advisory lock every write transaction holds: one writer at a time across the
    /// replicas of this schema.
    write_lock: i64,
    /// The channel the replicas of this schema announce their commits on.
    channel: String,
    /// Set when the backend is dropped: the watching thread stops.
    closed: Arc<AtomicBool>,
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
        // Closing a connection blocks on the driver's own runtime, which must not happen on a
        // thread that drives an async runtime (a server drops its store on one): close them on
        // a thread of their own.
        let connections: Vec<Mutex<Connection>> = self.writers.drain(..).chain(self.readers.drain(..)).collect();
        match std::thread::Builder::new().name("baton-pg-close".into()).spawn(move || drop(connections)) {
            Ok(closer) => {
                let _ = closer.join();
            }
            Err(error) => tracing::warn!(%error, "cannot start a thread to close the PostgreSQL connections"),
        }
    }
}

/// What one commit announces to the other replicas.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Announcement {
    from: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    m: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    g: Vec<i64>,
    #[serde(default)]
    e: bool,
    #[serde(default)]
    all: bool,
}

impl Announcement {
    fn of(from: u64, effects: &Effects) -> Announcement {
        let events = !effects.events.is_empty();
        if effects.messaged.len() + effects.gone.len() > ANNOUNCED_RUNNERS_MAX {
            return Announcement { from, e: events, all: true, ..Announcement::default() };
        }
        Announcement {
            from,
            m: effects.messaged.iter().map(|id| id.0).collect(),
            g: effects.gone.iter().map(|id| id.0).collect(),
            e: events,
            all: false,
        }
    }

    fn wake(&self) -> Wake {
        Wake {
            messaged: self.m.iter().copied().map(RunnerId).collect(),
            gone: self.g.iter().copied().map(RunnerId).collect(),
            events: self.e,
            everything: self.all,
        }
    }
}

fn pg_error(error: postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) => StoreError::Postgres(format!("{} ({}): {}", db.severity(), db.code().code(), db.message())),
        None => StoreError::Postgres(format!(
            "{error}: {}",
            std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default()
        )),
    }
}

/// Opens a connection, saying what to check when TLS may be why it failed.
fn open_client(connector: &Connector) -> R<Client> {
    connector.connect().map_err(|error| match pg_error(error) {
        StoreError::Postgres(message) => match connector.hint(&message) {
            Some(hint) => StoreError::Postgres(format!("{message} ({hint})")),
            None => StoreError::Postgres(message),
        },
        other => other,
    })
}

fn connect(connector: &Connector) -> R<Connection> {
    Ok(Connection { client: open_client(connector)?, statements: HashMap::new() })
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`, with TLS
    /// when its `sslmode` asks: see [`crate::pg_connect`]) and applies pending migrations.
    pub fn open(url: &str) -> R<PostgresBackend> {
        let connector = Arc::new(Connector::new(url)?);
        let mut first = connect(&connector)?;
        migrate(&mut first.client)?;
        let mut writers = vec![Mutex::new(first)];
        for _ in 1..WRITERS {
            writers.push(Mutex::new(connect(&connector)?));
        }
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(connect(&connector)?));
        }
        // Baton's schema names its lock and channel, so that two Baton databases in one
        // PostgreSQL database (in two schemas) neither wait for nor wake each other.
        let schema: String = first_row(&mut free_connection(&writers).client, "SELECT current_schema()::text")?;
        let scope = fnv1a(schema.as_bytes());
        Ok(PostgresBackend {
            connector,
            writers,
            readers,
            replica: random_u64().max(1),
            write_lock: i64::from_ne_bytes(scope.to_ne_bytes()),
            channel: format!("baton_commits_{scope:016x}"),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A free connection of `pool`, opened again if the server closed it.
    fn connection<'a>(&self, pool: &'a [Mutex<Connection>]) -> R<MutexGuard<'a, Connection>> {
        let mut guard = free_connection(pool);
        if guard.client.is_closed() {
            tracing::warn!("the PostgreSQL connection was closed; connecting again");
            *guard = connect(&self.connector)?;
        }
        Ok(guard)
    }
}

/// A connection nobody uses, or else the first one once it is free.
fn free_connection(pool: &[Mutex<Connection>]) -> MutexGuard<'_, Connection> {
    for connection in pool {
        if let Ok(guard) = connection.try_lock() {
            return guard;
        }
    }
    pool[0].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn migrate(client: &mut Client) -> R<()> {
    let mut tx = client.transaction().map_err(pg_error)?;
    // One migrating replica at a time.
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7361); CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
    )
    .map_err(pg_error)?;
    let applied: i64 = match tx.query_opt("SELECT version FROM schema_version", &[]).map_err(pg_error)? {
        Some(row) => row.try_get(0).map_err(pg_error)?,
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[]).map_err(pg_error)?;
            0
        }
    };
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if applied > known {
        return Err(StoreError::SchemaTooNew {
            found: u32::try_from(applied).unwrap_or(u32::MAX),
            known: u32::try_from(known).unwrap_or(u32::MAX),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(applied).unwrap_or(0)) {
        let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
        tx.batch_execute(sql).map_err(|error| StoreError::Migration {
            version: u32::try_from(version).unwrap_or(u32::MAX),
            message: error.to_string(),
        })?;
        tx.execute("UPDATE schema_version SET version = $1", &[&version]).map_err(pg_error)?;
        tracing::info!(version, "applied postgres migration");
    }
    tx.commit().map_err(pg_error)
}

/// The first column of the first row of `sql`.
fn first_row(client: &mut Client, sql: &str) -> R<String> {
    client.query_one(sql, &[]).and_then(|row| row.try_get(0)).map_err(pg_error)
}

/// A stable 64-bit hash (FNV-1a): the same on every replica and every build.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// A random number, without a dependency.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A random number below `bound` (at least 1).
fn jitter(bound: u64) -> u64 {
    random_u64() % bound.max(1)
}

/// Opens the listening connection.
fn listen(connector: &Connector, channel: &str) -> R<Client> {
    let mut client = open_client(connector)?;
    client.batch_execute(&format!("LISTEN {channel}")).map_err(pg_error)?;
    Ok(client)
}

/// Hands the other replicas' announcements to `observer` until `closed` is set; connects
/// again (with a growing pause) when the connection is lost, and then says that anything may
/// have changed, since announcements made meanwhile were missed.
fn watch(
    connector: Arc<Connector>,
    channel: String,
    replica: u64,
    mut client: Option<Client>,
    observer: Arc<dyn CommitObserver>,
    closed: Arc<AtomicBool>,
) {
    let mut pause = Duration::from_millis(100);
    while !closed.load(Ordering::Relaxed) {
        let Some(listening) = client.as_mut() else {
            std::thread::sleep(pause);
            match listen(&connector, &channel) {
                Ok(connected) => {
                    tracing::info!("listening for other replicas' commits again");
                    client = Some(connected);
                    pause = Duration::from_millis(100);
                    observer.committed_elsewhere(&Wake { events: true, everything: true, ..Wake::default() });
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other replicas' commits; retrying");
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
            continue;
        };
        let next = listening.notifications().timeout_iter(Duration::from_secs(1)).next();
        let lost = listening.is_closed();
        match next.transpose() {
            Some(Ok(notification)) => match serde_json::from_str::<Announcement>(notification.payload()) {
                Ok(announcement) if announcement.from == replica => {}
                Ok(announcement) => observer.committed_elsewhere(&announcement.wake()),
                Err(error) => {
                    tracing::warn!(%error, "an unreadable commit announcement; waking everyone");
                    observer.committed_elsewhere(&Wake { events: true, everything: true, ..Wake::default() });
                }
            },
            Some(Err(error)) => {
                tracing::warn!(error = %pg_error(error), "lost the connection that listens for other replicas");
                client = None;
            }
            None if lost => client = None,
            None => {}
        }
    }
}

/// True when PostgreSQL aborted the transaction so that it may succeed if run again.
fn retryable(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
            || *code == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
    })
}

impl Backend for PostgresBackend {
    fn write(&self, body: &mut dyn FnMut(&mut dyn Tx) -> R<bool>) -> R<()> {
        let mut guard = self.connection(&self.writers)?;
        let connection = &mut *guard;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut transaction = connection
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::ReadCommitted)
                .start()
                .map_err(pg_error)?;
            // One writer at a time, across replicas; every statement after this one sees every
            // write committed before it.
            transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&self.write_lock]).map_err(pg_error)?;
            let mut tx = PgTx {
                tx: transaction,
                statements: &mut connection.statements,
                failure: None,
                replica: self.replica,
                channel: &self.channel,
            };
            let outcome = body(&mut tx);
            let PgTx { tx: transaction, failure, .. } = tx;
            let result = match outcome {
                Ok(true) => transaction.commit().map_err(|error| (retryable(&error), pg_error(error))),
                Ok(false) => transaction.rollback().map_err(|error| (false, pg_error(error))),
                Err(error) => {
                    let _ = transaction.rollback();
                    Err((failure.unwrap_or(false), error))
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err((true, _)) if attempt < WRITE_ATTEMPTS => {
                    // Back off a random, growing while so the conflicting transactions finish.
                    let ceiling = 1u64 << attempt.min(6);
                    std::thread::sleep(std::time::Duration::from_micros(jitter(ceiling * 500)));
                    continue;
                }
                Err((_, error)) => return Err(error),
            }
        }
    }

    fn read(&self, body: &mut dyn FnMut(&mut dyn Tx) -> R<()>) -> R<()> {
        let mut guard = self.connection(&self.readers)?;
        let connection = &mut *guard;
        let transaction = connection
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(pg_error)?;
        let mut tx =
            PgTx { tx: transaction, statements: &mut connection.statements, failure: None, replica: 0, channel: "" };
        let outcome = body(&mut tx);
        let PgTx { tx: transaction, .. } = tx;
        transaction.commit().map_err(pg_error)?;
        outcome
    }

    fn watch_others(&self, observer: Arc<dyn CommitObserver>) {
        // The first connection is made here, so no commit made after this returns is missed.
        let client = listen(&self.connector, &self.channel)
            .inspect_err(|error| tracing::warn!(%error, "cannot listen for other replicas' commits yet"))
            .ok();
        let (connector, channel, replica, closed) =
            (self.connector.clone(), self.channel.clone(), self.replica, self.closed.clone());
        let spawned = std::thread::Builder::new()
            .name("baton-pg-listen".into())
            .spawn(move || watch(connector, channel, replica, client, observer, closed));
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the thread that listens for other replicas' commits");
        }
    }
}

struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
    /// Set when a statement failed in a way worth running the whole transaction again.
    failure: Option<bool>,
    /// The backend's mark on announcements (0 in read transactions, which announce nothing).
    replica: u64,
    channel: &'a str,
}

/// One parameter, typed as the schema types it.
#[derive(Debug)]
enum PgValue {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
}

impl ToSql for PgValue {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            PgValue::Int(value) => value.to_sql(ty, out),
            PgValue::Bool(value) => value.to_sql(ty, out),
            PgValue::Text(value) => value.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <bool as ToSql>::accepts(ty) || <String as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// A Rust value as a parameter.
trait Param {
    fn value(&self) -> PgValue;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value(&self) -> PgValue {
                PgValue::Int(Some(i64::try_from(*self).unwrap_or(i64::MAX)))
            }
        }
        impl Param for Option<$t> {
            fn value(&self) -> PgValue {
                PgValue::Int(self.map(|value| i64::try_from(value).unwrap_or(i64::MAX)))
            }
        }
    )*};
}
int_param!(i64, i32, u32, u64, u16, usize);

impl Param for bool {
    fn value(&self) -> PgValue {
        PgValue::Bool(Some(*self))
    }
}
impl Param for String {
    fn value(&self) -> PgValue {
        PgValue::Text(Some(self.clone()))
    }
}
impl Param for str {
    fn value(&self) -> PgValue {
        PgValue::Text(Some(self.to_string()))
    }
}
impl Param for Option<String> {
    fn value(&self) -> PgValue {
        PgValue::Text(self.clone())
    }
}
impl Param for Option<&str> {
    fn value(&self) -> PgValue {
        PgValue::Text(self.map(str::to_string))
    }
}
impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> PgValue {
        (**self).value()
    }
}

type Params = Vec<PgValue>;

macro_rules! params {
    () => { Vec::<PgValue>::new() };
    ($($value:expr),+ $(,)?) => { vec![$(Param::value(&$value)),+] };
}

/// A row, read with the conversions the SQLite backend gets from rusqlite.
struct PgRow<'a>(&'a postgres::Row);

trait FromPg: Sized {
    fn from_pg(row: &postgres::Row, index: usize) -> R<Self>;
}

fn corrupt(index: usize, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {index}: {error}"))
}

macro_rules! int_from_pg {
    ($($t:ty),*) => {$(
        impl FromPg for $t {
            fn from_pg(row: &postgres::Row, index: usize) -> R<Self> {
                let value: i64 = row.try_get(index).map_err(|error| corrupt(index, error))?;
                <$t>::try_from(value).map_err(|error| corrupt(index, error))
            }
        }
        impl FromPg for Option<$t> {
            fn from_pg(row: &postgres::Row, index: usize) -> R<Self> {
                let value: Option<i64> = row.try_get(index).map_err(|error| corrupt(index, error))?;
                value.map(|value| <$t>::try_from(value).map_err(|error| corrupt(index, error))).transpose()
            }
        }
    )*};
}
int_from_pg!(i64, i32, u32, u64, u16);

macro_rules! plain_from_pg {
    ($($t:ty),*) => {$(
        impl FromPg for $t {
            fn from_pg(row: &postgres::Row, index: usize) -> R<Self> {
                row.try_get(index).map_err(|error| corrupt(index, error))
            }
        }
    )*};
}
plain_from_pg!(bool, String, Option<String>, Option<bool>);

impl PgRow<'_> {
    fn get<T: FromPg>(&self, index: usize) -> R<T> {
        T::from_pg(self.0, index)
    }
}

/// The SQLite statement text with `?N` placeholders as PostgreSQL's `$N`.
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl PgTx<'_> {
    fn statement(&mut self, sql: &str) -> R<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(&pg_sql(sql)).map_err(|error| self.fail(error))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn fail(&mut self, error: postgres::Error) -> StoreError {
        if retryable(&error) {
            self.failure = Some(true);
        }
        pg_error(error)
    }

    fn query(&mut self, sql: &str, params: &Params) -> R<Vec<postgres::Row>> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|value| value as &(dyn ToSql + Sync)).collect();
        self.tx.query(&statement, &refs).map_err(|error| self.fail(error))
    }

    fn one<T>(&mut self, sql: &str, params: Params, map: fn(&PgRow<'_>) -> R<T>) -> R<Option<T>> {
        let rows = self.query(sql, &params)?;
        rows.first().map(|row| map(&PgRow(row))).transpose()
    }

    fn many<T>(&mut self, sql: &str, params: Params, map: fn(&PgRow<'_>) -> R<T>) -> R<Vec<T>> {
        let rows = self.query(sql, &params)?;
        rows.iter().map(|row| map(&PgRow(row))).collect()
    }

    fn exec(&mut self, sql: &str, params: Params) -> R<usize> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|value| value as &(dyn ToSql + Sync)).collect();
        let changed = self.tx.execute(&statement, &refs).map_err(|error| self.fail(error))?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    fn insert_returning_id(&mut self, sql: &str, params: Params) -> R<i64> {
        let rows = self.query(sql, &params)?;
        let row = rows.first().ok_or_else(|| StoreError::Corrupt("an insert returned no id".into()))?;
        PgRow(row).get(0)
    }

    fn exec_one(&mut self, what: &str, sql: &str, params: Params) -> R<()> {
        match self.exec(sql, params)? {
            1 => Ok(()),
            n => Err(StoreError::Corrupt(format!("update of {what} changed {n} rows"))),
        }
    }
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

const RUNNER_COLUMNS: &str = "id, name, labels, pool, capacity, ephemeral, state, reported_free_slots, session_id, \
                              credential_hash, created_at, last_seen_at";

fn runner_row(row: &PgRow<'_>) -> R<Runner> {
    Ok(Runner {
        id: RunnerId(row.get(0)?),
        name: row.get(1)?,
        labels: parse_list(&row.get::<String>(2)?)?,
        pool: row.get(3)?,
        capacity: row.get(4)?,
        ephemeral: row.get(5)?,
        state: parse_name("runner state", &row.get::<String>(6)?, RunnerState::parse)?,
        reported_free_slots: row.get(7)?,
        session_id: row.get::<Option<i64>>(8)?.map(SessionId),
        credential_hash: row.get(9)?,
        created_at: to_ts(row.get(10)?),
        last_seen_at: to_ts(row.get(11)?),
    })
}

const SESSION_COLUMNS: &str = "id, runner_id, state, opened_at, expires_at";

fn session_row(row: &PgRow<'_>) -> R<Session> {
    Ok(Session {
        id: SessionId(row.get(0)?),
        runner_id: RunnerId(row.get(1)?),
        state: parse_name("session state", &row.get::<String>(2)?, SessionState::parse)?,
        opened_at: to_ts(row.get(3)?),
        expires_at: to_ts(row.get(4)?),
    })
}

const JOB_COLUMNS: &str = "id, name, labels, spec, state, conclusion, reason, max_attempts, attempt, epoch, \
                           cancel_requested, created_at, completed_at, run_id";

fn job_row(row: &PgRow<'_>) -> R<Job> {
    Ok(Job {
        id: JobId(row.get(0)?),
        name: row.get(1)?,
        labels: parse_list(&row.get::<String>(2)?)?,
        spec: row.get(3)?,
        state: parse_name("job state", &row.get::<String>(4)?, JobState::parse)?,
        conclusion: match row.get::<Option<String>>(5)? {
            Some(text) => Some(parse_name("conclusion", &text, JobConclusion::parse)?),
            None => None,
        },
        reason: row.get(6)?,
        max_attempts: row.get(7)?,
        attempt: AttemptNo(row.get(8)?),
        epoch: LeaseEpoch(u64::try_from(row.get::<i64>(9)?).unwrap_or(0)),
        cancel_requested: row.get(10)?,
        created_at: to_ts(row.get(11)?),
        completed_at: row.get::<Option<i64>>(12)?.map(to_ts),
        run_id: row.get::<Option<i64>>(13)?.map(RunId),
    })
}

const WEBHOOK_COLUMNS: &str = "id, url, events, secrets, ordered, cursor, removed, created_at";

fn webhook_row(row: &PgRow<'_>) -> R<Webhook> {
    Ok(Webhook {
        id: row.get(0)?,
        url: row.get(1)?,
        events: parse_list(&row.get::<String>(2)?)?,
        secrets: row.get(3)?,
        ordered: row.get(4)?,
        cursor: EventSeq(row.get(5)?),
        removed: row.get(6)?,
        created_at: to_ts(row.get(7)?),
    })
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_seq, message_id, event, payload, status, attempts, response_code, \
                                error, latency_ms, next_attempt_at, created_at, completed_at";

fn delivery_row(row: &PgRow<'_>) -> R<Delivery> {
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
        latency_ms: row.get::<Option<i64>>(10)?.map(|ms| u64::try_from(ms).unwrap_or(0)),
        next_attempt_at: to_ts(row.get(11)?),
        created_at: to_ts(row.get(12)?),
        completed_at: row.get::<Option<i64>>(13)?.map(to_ts),
    })
}

const RUN_COLUMNS: &str = "id, name, file_name, workflow, inputs, secrets, options, state, cancel_requested, \
                           conclusion, created_at, completed_at";

fn run_row(row: &PgRow<'_>) -> R<Run> {
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
        completed_at: row.get::<Option<i64>>(11)?.map(to_ts),
    })
}

const ATTEMPT_COLUMNS: &str = "job_id, number, state, runner_id, epoch, queued_at, offered_at, accept_deadline, \
                               started_at, lease_deadline, ended_at, result, outputs, summary, reason";

fn attempt_row(row: &PgRow<'_>) -> R<Attempt> {
    Ok(Attempt {
        job_id: JobId(row.get(0)?),
        number: AttemptNo(row.get(1)?),
        state: parse_name("attempt state", &row.get::<String>(2)?, AttemptState::parse)?,
        runner_id: row.get::<Option<i64>>(3)?.map(RunnerId),
        epoch: row.get::<Option<i64>>(4)?.map(|epoch| LeaseEpoch(u64::try_from(epoch).unwrap_or(0))),
        queued_at: to_ts(row.get(5)?),
        offered_at: row.get::<Option<i64>>(6)?.map(to_ts),
        accept_deadline: row.get::<Option<i64>>(7)?.map(to_ts),
        started_at: row.get::<Option<i64>>(8)?.map(to_ts),
        lease_deadline: row.get::<Option<i64>>(9)?.map(to_ts),
        ended_at: row.get::<Option<i64>>(10)?.map(to_ts),
        result: match row.get::<Option<String>>(11)? {
            Some(text) => Some(parse_name("attempt result", &text, AttemptResult::parse)?),
            None => None,
        },
        outputs: parse_map(&row.get::<String>(12)?)?,
        summary: row.get(13)?,
        reason: row.get(14)?,
    })
}

fn attempt_with_labels_row(row: &PgRow<'_>) -> R<(Attempt, Vec<String>)> {
    let attempt = attempt_row(row)?;
    let labels = parse_list(&row.get::<String>(15)?)?;
    Ok((attempt, labels))
}

const TOKEN_COLUMNS: &str = "id, hash, labels, pool, expires_at, max_uses, uses, revoked, created_at";

fn token_row(row: &PgRow<'_>) -> R<RegistrationToken> {
    Ok(RegistrationToken {
        id: row.get(0)?,
        hash: row.get(1)?,
        labels: parse_list(&row.get::<String>(2)?)?,
        pool: row.get(3)?,
        expires_at: to_ts(row.get(4)?),
        max_uses: row.get(5)?,
        uses: row.get(6)?,
        revoked: row.get(7)?,
        created_at: to_ts(row.get(8)?),
    })
}

fn jit_row(row: &PgRow<'_>) -> R<JitConfig> {
    Ok(JitConfig {
        hash: row.get(0)?,
        runner_id: RunnerId(row.get(1)?),
        expires_at: to_ts(row.get(2)?),
        used_at: row.get::<Option<i64>>(3)?.map(to_ts),
        created_at: to_ts(row.get(4)?),
    })
}

fn message_row(row: &PgRow<'_>) -> R<(MessageId, Message)> {
    let id = MessageId(row.get(0)?);
    let kind: String = row.get(1)?;
    let job = row.get::<Option<i64>>(2)?.map(JobId);
    let attempt = row.get::<Option<u32>>(3)?.map(AttemptNo);
    let epoch = row.get::<Option<i64>>(4)?.map(|epoch| LeaseEpoch(u64::try_from(epoch).unwrap_or(0)));
    let message = match (kind.as_str(), job, attempt, epoch) {
        ("job_offer", Some(job_id), Some(attempt), Some(epoch)) => Message::JobOffer { job_id, attempt, epoch },
        ("cancel", Some(job_id), Some(attempt), Some(epoch)) => Message::Cancel { job_id, attempt, epoch },
        ("drain", ..) => Message::Drain,
        ("retire", ..) => Message::Retire,
        _ => return Err(StoreError::Corrupt(format!("message {id}: kind {kind:?} with missing fields"))),
    };
    Ok((id, message))
}

fn event_row(row: &PgRow<'_>) -> R<Event> {
    Ok(Event {
        seq: EventSeq(row.get(0)?),
        at: to_ts(row.get(1)?),
        kind: parse_name("event kind", &row.get::<String>(2)?, EventKind::parse)?,
        job_id: row.get::<Option<i64>>(3)?.map(JobId),
        attempt: row.get::<Option<u32>>(4)?.map(AttemptNo),
        runner_id: row.get::<Option<i64>>(5)?.map(RunnerId),
        data: row.get(6)?,
    })
}

fn chunk_row(row: &PgRow<'_>) -> R<LogChunk> {
    Ok(LogChunk { seq: u64::try_from(row.get::<i64>(0)?).unwrap_or(0), at: to_ts(row.get(1)?), data: row.get(2)? })
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl Tx for PgTx<'_> {
    fn meta_get(&mut self, key: &str) -> R<Option<String>> {
        self.one("SELECT value FROM meta WHERE key = ?1", params![key], |row| row.get(0))
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
        let row = self.one(
            "SELECT COUNT(*), MAX(ended_at) FROM attempts WHERE runner_id = ?1",
            params![runner_id.0],
            |row| Ok((row.get::<i64>(0)?, row.get::<Option<i64>>(1)?)),
        )?;
        let (count, last) = row.unwrap_or((0, None));
        Ok((u32::try_from(count).unwrap_or(u32::MAX), last.map(to_ts)))
    }

    fn runners_with_reported_slots(&mut self) -> R<Vec<Runner>> {
        self.many(
            &format!(
                "SELECT {RUNNER_COLUMNS} FROM runners WHERE state = 'active' AND reported_free_slots > 0 ORDER BY id"
            ),
            params![],
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
        self.many(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE state = 'open' ORDER BY id"),
            params![],
            session_row,
        )
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
        self.many(
            &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE NOT removed ORDER BY id"),
            params![],
            webhook_row,
        )
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
        let rows = self.many(
            "SELECT jobs.labels, COUNT(*) AS depth FROM attempts JOIN jobs ON jobs.id = attempts.job_id \
             WHERE attempts.state = 'queued' GROUP BY jobs.labels ORDER BY depth DESC, jobs.labels LIMIT ?1",
            params![limit_param(limit)],
            |row| Ok((row.get::<String>(0)?, row.get::<i64>(1)?)),
        )?;
        rows.into_iter().map(|(labels, depth)| Ok((parse_list(&labels)?, u64::try_from(depth).unwrap_or(0)))).collect()
    }

    fn runner_counts(&mut self) -> R<Vec<(String, u64)>> {
        let rows =
            self.many("SELECT state, COUNT(*) FROM runners GROUP BY state ORDER BY state", params![], |row| {
                Ok((row.get::<String>(0)?, row.get::<i64>(1)?))
            })?;
        Ok(rows.into_iter().map(|(state, count)| (state, u64::try_from(count).unwrap_or(0))).collect())
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
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE state = 'offered' AND accept_deadline < ?1 \
                 ORDER BY job_id, number"
            ),
            params![ts(now)],
            attempt_row,
        )
    }

    fn attempts_lease_expired(&mut self, now: Timestamp) -> R<Vec<Attempt>> {
        self.many(
            &format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE state = 'running' AND lease_deadline < ?1 \
                 ORDER BY job_id, number"
            ),
            params![ts(now)],
            attempt_row,
        )
    }

    fn attempts_live(&mut self) -> R<Vec<Attempt>> {
        self.many(
            &format!(
                "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE state IN ('offered', 'running') ORDER BY job_id, number"
            ),
            params![],
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
        let last = self.one(
            "SELECT MAX(seq) FROM log_chunks WHERE job_id = ?1 AND attempt = ?2",
            params![job_id.0, attempt.0],
            |row| row.get::<Option<i64>>(0),
        )?;
        Ok(last.flatten().map(|seq| u64::try_from(seq).unwrap_or(0)).unwrap_or(0))
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
        let last = self.one("SELECT MAX(seq) FROM events", params![], |row| row.get::<Option<i64>>(0))?;
        Ok(EventSeq(last.flatten().unwrap_or(0)))
    }

    fn announce(&mut self, effects: &Effects) -> R<()> {
        let payload = serde_json::to_string(&Announcement::of(self.replica, effects))
            .map_err(|error| StoreError::Postgres(format!("encode a commit announcement: {error}")))?;
        self.tx.execute("SELECT pg_notify($1, $2)", &[&self.channel, &payload]).map_err(pg_error)?;
        Ok(())
    }
}

fn attempt_params(attempt: &Attempt) -> Params {
    params![
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
        attempt.reason.clone()
    ]
}

impl crate::Store {
    /// Opens the PostgreSQL store at `url`.
    pub fn open_postgres(url: &str, timeouts: baton_core::Timeouts) -> R<crate::Store> {
        Ok(crate::Store::new(Box::new(PostgresBackend::open(url)?), timeouts))
    }
}
