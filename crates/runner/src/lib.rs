//! Baton's runner agent.
//!
//! A listener ([`listener`]) holds the runner's session, long-polls for offers, renews leases
//! on a thread of its own and uploads logs; each job runs in a worker process ([`worker`]): the
//! same binary, re-executed, in its own attempt directory.

pub mod listener;
pub mod protocol;
pub mod worker;

/// The hidden `baton` subcommand that runs a worker.
pub const WORKER_SUBCOMMAND: &str = "runner-worker";
