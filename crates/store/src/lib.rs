//! Baton's one truth.
//!
//! A [`Store`] runs every decision that matters as ONE transaction on a backend: assign,
//! accept, renew, complete, retire-if-idle, the expiry sweeps. Each transaction script loads
//! rows through the row-level [`Tx`] trait, asks `baton-core` what follows, writes the result
//! and appends its events, so the predicate and the effect cannot be split.
//!
//! The scripts are written once, in [`ops`]; a backend only stores rows. Two backends pass one
//! conformance suite (`tests/conformance.rs`): [`mem`] (for the simulator and fast tests) and
//! [`sqlite`] (the embedded default).

pub mod error;
pub mod mem;
pub mod ops;
mod pg_connect;
pub mod postgres;
pub mod runs;
pub mod scaler;
pub mod sqlite;
pub mod tx;
pub mod webhooks;

pub use error::{Error, StoreError};
pub use ops::*;
pub use runs::{NewRun, RunView};
pub use scaler::{PoolRunner, PoolSnapshot};
pub use tx::{Backend, Event, LogChunk, Tx};
