//! Baton's autoscaler.
//!
//! Pools of identical runners (`config.rs`) are kept at the size their demand asks for. The
//! scaler follows the server's events and reconciles a pool on every relevant one, plus on a
//! timer; `plan.rs` decides from one snapshot of the server (`GET /api/v1/scaler/snapshot`) and
//! the provider's list of machines, and `scaler.rs` carries the decisions out, recording each in
//! the events stream (`scaler.create`, `scaler.retire` with the server's answer, `scaler.terminate`,
//! `scaler.cleanup`).
//!
//! **Invariant:** a machine whose runner is registered is terminated only after the server's
//! atomic retire-if-idle answered `retired` for that runner. A `busy` answer is counted and
//! logged, never overridden, and no other reading (a runner's `busy` flag, an idle time) can
//! terminate anything.

pub mod config;
pub mod docker;
pub mod exec;
pub mod metrics;
pub mod plan;
pub mod process;
pub mod provider;
pub mod scaler;

pub use config::{Config, PoolConfig, ProviderConfig};
pub use scaler::{Defaults, Scaler};
