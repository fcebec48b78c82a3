//! Workflow runs as a pure state machine.
//!
//! A run is a [`RunState`]: every workflow job with its phase, result, outputs and matrix legs.
//! The store keeps it in the run's row and changes it only inside the transaction that changes
//! the run's Baton jobs: the [`Planner`] takes the state and what happened (a run started, a leg
//! ended, the run was cancelled), changes the state and answers with [`Action`]s (enqueue a leg,
//! cancel a leg) that the store carries out in that same transaction. So a run can never be
//! seen with a finished leg whose dependents were not considered, and a crash between the two
//! cannot happen.
//!
//! Job-level expressions are evaluated here, on the server, with GitHub's contexts for them:
//! `if` with `github`, `needs`, `vars`, `inputs`; `strategy` likewise; `runs-on`, `name`,
//! `timeout-minutes` and `continue-on-error` also with `matrix` and `strategy`. Everything inside
//! a step is evaluated by the runner.

mod inputs;
mod matrix;
mod plan;
mod state;

pub use inputs::{INPUT_BYTES_MAX, typed_inputs};
pub use plan::{Action, DEFAULT_TIMEOUT_MINUTES, PlanError, Planner, RunContext};
pub use state::{Leg, Outcome, Phase, RunState, WorkflowJob};
