//! What a transaction script can answer besides success.
//!
//! [`Error`] has one variant per answer a caller branches on (the server maps each to an HTTP
//! status and a machine-readable code); [`StoreError`] is a failure of the backend itself.

use baton_core::{AttemptNo, InvalidTransition, JobId, LeaseEpoch};

/// A failure of the storage backend: I/O, corruption, or a conflict worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(String),
    /// The commit this write shared with others failed, or one of them ended the transaction.
    #[error("sqlite: the commit this write shared failed: {0}")]
    GroupCommit(String),
    /// The database settings (the URL) cannot be used as given.
    #[error("database settings: {0}")]
    Config(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("migration {version} failed: {message}")]
    Migration { version: u32, message: String },
    #[error("the database was written by a newer Baton (schema {found}, this binary knows {known})")]
    SchemaTooNew { found: u32, known: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The credential or token is unknown, expired, revoked or used up (HTTP 401).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid credential used outside its scope (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The call carried a fencing epoch that is no longer current (HTTP 409 `stale_lease`).
    #[error("stale lease for job {job_id} attempt {attempt}: epoch {presented} is no longer current ({detail})")]
    StaleLease { job_id: JobId, attempt: AttemptNo, presented: LeaseEpoch, detail: String },
    /// The state machine does not allow this event in the current state (HTTP 409).
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    /// The call conflicts with current state in another way (HTTP 409 with `code`).
    #[error("{message}")]
    Conflict { code: &'static str, message: String, hint: Option<String> },
    /// The input is well-formed but not acceptable (HTTP 422).
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        Error::Store(StoreError::Sqlite(error))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
