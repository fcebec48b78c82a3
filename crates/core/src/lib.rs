//! Baton's pure domain core.
//!
//! Everything that decides something about jobs, runners, sessions and leases lives here as
//! plain data and plain functions: the state machines as transition tables, dispatch matching
//! and lease arithmetic. Nothing in this crate reads a clock, touches a file or a socket, or
//! draws a random number: time comes in as a [`Timestamp`] parameter, so the store, the server
//! and the simulator all run the same decisions.

pub mod attempt;
pub mod dispatch;
pub mod event;
pub mod ids;
pub mod job;
pub mod lease;
pub mod limits;
pub mod machine;
pub mod model;
pub mod runner;
pub mod session;
pub mod time;

pub use attempt::{AttemptEvent, AttemptResult, AttemptState};
pub use event::EventKind;
pub use ids::{AttemptNo, EventSeq, JobId, LeaseEpoch, MessageId, RunId, RunnerId, SessionId};
pub use job::{JobConclusion, JobEvent, JobState};
pub use lease::Timeouts;
pub use machine::InvalidTransition;
pub use model::{Attempt, Delivery, JitConfig, Job, Message, RegistrationToken, Run, Runner, Session, Webhook};
pub use runner::{RunnerEvent, RunnerState};
pub use session::{SessionEvent, SessionState};
pub use time::Timestamp;
