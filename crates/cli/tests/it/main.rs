//! Integration tests of the `baton` binary: a real server on loopback and real runner
//! processes running real jobs.

mod common;
mod replicas_sigkill;
mod run_command;
mod runner_cleanup;
mod runner_commands;
mod runner_f1_ephemeral;
mod runner_f3_cancel;
mod runner_lifecycle;
mod runner_partition;
mod scaler_pools;
mod webhooks_crash;
