//! Baton's wire types: the HTTP/JSON contract between the server and every client.
//!
//! Only these types are serialized; the core's domain types never are.
//!
//! **Boundary:** this crate is the contract with runners already deployed. A change that an
//! older runner cannot read needs a new API version.
//!
//! Timestamps are RFC 3339 strings in UTC; durations are integer milliseconds in fields that
//! end in `_ms`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The API version prefix.
pub const API_PREFIX: &str = "/api/v1";

/// Every error the API returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable, stable: `stale_lease`, `unauthorized`, `invalid_json`, ...
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// What to do about it, when there is something to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

// ----- registration -----

/// Registers a runner with a registration token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// A registration token from `POST /api/v1/registration-tokens`.
    pub token: String,
    pub name: String,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Jobs run at once; ephemeral runners always have 1.
    #[serde(default = "one")]
    pub capacity: u32,
    /// Runs exactly one job, then leaves.
    #[serde(default)]
    pub ephemeral: bool,
}

fn one() -> u32 {
    1
}

/// Registers the runner a JIT config was created for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterJitRequest {
    pub jit_config: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    pub runner: RunnerInfo,
    /// The runner's credential. Shown once; the server keeps only its hash.
    pub credential: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRegistrationTokenRequest {
    /// Labels every runner registered with this token gets.
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub pool: Option<String>,
    /// Lifetime in seconds; default one hour, at most 30 days.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// How many runners may register with it; unlimited when absent.
    #[serde(default)]
    pub max_uses: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegistrationTokenResponse {
    /// Shown once; the server keeps only its hash.
    pub token: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJitConfigRequest {
    pub name: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default = "one")]
    pub capacity: u32,
    /// JIT runners are ephemeral unless told otherwise.
    #[serde(default = "yes")]
    pub ephemeral: bool,
    /// Lifetime in seconds; default one hour.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JitConfigResponse {
    pub runner: RunnerInfo,
    /// Pass to `baton runner --jit`. Works once; shown once.
    pub jit_config: String,
    pub expires_at: String,
}

// ----- sessions and messages -----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionResponse {
    pub session_id: i64,
    pub runner_id: i64,
    pub timeouts: ProtocolTimeouts,
}

/// The timing the server enforces, so runners need no configuration of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProtocolTimeouts {
    pub lease_ttl_ms: u64,
    pub renew_interval_ms: u64,
    pub accept_timeout_ms: u64,
    pub session_ttl_ms: u64,
    pub long_poll_max_ms: u64,
}

/// Query of a long-poll.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Seconds to wait for a message when none is waiting; 0 returns at once. At most 60.
    #[serde(default)]
    pub wait: Option<u64>,
    /// Slots free on the runner now: workers reaped and attempt directories removed.
    #[serde(default)]
    pub free_slots: Option<u32>,
    /// The id of the newest message the runner has processed; older messages are dropped.
    #[serde(default)]
    pub ack: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PollResponse {
    pub messages: Vec<RunnerMessage>,
}

/// A message for a runner. Delivered at least once, until acknowledged by a later poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunnerMessage {
    pub id: i64,
    #[serde(flatten)]
    pub body: MessageBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Messages live only between a poll's answer and their handling; boxing the offer would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum MessageBody {
    /// Accept within the accept timeout, or the offer goes elsewhere.
    JobOffer(JobOffer),
    /// Stop the attempt and complete it as cancelled.
    Cancel { job_id: i64, attempt: u32, epoch: u64 },
    /// Take no new jobs; finish the running ones.
    Drain,
    /// The runner was retired: finish nothing new, say goodbye and exit.
    Retire,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobOffer {
    pub job_id: i64,
    pub attempt: u32,
    pub epoch: u64,
    /// The job token for this attempt and epoch; every job call carries it.
    pub token: String,
    pub spec: JobSpec,
    /// The run's secrets, by name: the `secrets` context of the job's expressions, and values
    /// masked in every log line. Sent only in offers, never stored with the job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

// ----- job calls (fenced) -----

/// The fence every job call carries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FencedRequest {
    pub epoch: u64,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseResponse {
    pub lease_deadline: String,
    pub lease_ttl_ms: u64,
    /// The job was cancelled: stop it and complete it as `cancelled`.
    pub cancel_requested: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogUploadRequest {
    pub epoch: u64,
    pub token: String,
    /// Chunks of one attempt are numbered from 1 without gaps.
    pub seq: u64,
    /// At most 64 KiB.
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogUploadResponse {
    /// False when the chunk was already stored (a retry).
    pub stored: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    Success,
    Failure,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub epoch: u64,
    pub token: String,
    pub result: AttemptResult,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// The job's step summary (Markdown, at most 1 MiB).
    #[serde(default)]
    pub summary: Option<String>,
}

// ----- jobs -----

/// A job as submitted: labels to match and shell steps to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    /// A runner must carry all of them.
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub steps: Vec<StepSpec>,
    #[serde(default)]
    pub timeout_minutes: Option<u32>,
    /// Attempts before a job whose runners keep vanishing fails as `infrastructure_failure`.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The expression contexts known before the job starts (`github`, `inputs`, `vars`, `needs`,
    /// `strategy`, `matrix`, `job`), as a JSON object. `env`, step `run`, `if`, `shell`,
    /// `working-directory` and step `env` values are templates evaluated on the runner with
    /// these, `secrets`, `runner`, `env` and `steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contexts: Option<serde_json::Value>,
    /// The job's `outputs:`: templates evaluated when the job ends, with the `steps` context.
    /// Without it, the job reports every step's `GITHUB_OUTPUT` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub run: String,
    /// `bash` (default), `sh`, `python`, or a template containing `{0}`.
    #[serde(default)]
    pub shell: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_directory: Option<String>,
    #[serde(default)]
    pub continue_on_error: bool,
    #[serde(default)]
    pub timeout_minutes: Option<u32>,
    /// A condition as GitHub writes it (`success()` by default, `failure()`, `always()`,
    /// `steps.x.outputs.y == 'z'`, ...), evaluated on the runner before the step.
    #[serde(default, rename = "if")]
    pub condition: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: i64,
    pub name: String,
    pub labels: Vec<String>,
    /// `queued`, `running` or `completed`.
    pub state: String,
    /// `success`, `failure`, `cancelled` or `infrastructure_failure` once completed.
    pub conclusion: Option<String>,
    pub reason: Option<String>,
    pub max_attempts: u32,
    pub cancel_requested: bool,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub attempts: Vec<Attempt>,
    pub spec: JobSpec,
    /// The workflow run this job is a leg of.
    #[serde(default)]
    pub run_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub number: u32,
    /// `queued`, `offered`, `running`, `completed` or `lost`.
    pub state: String,
    pub runner_id: Option<i64>,
    pub epoch: Option<u64>,
    pub result: Option<AttemptResult>,
    pub outputs: BTreeMap<String, String>,
    /// The step summary (Markdown) the attempt reported.
    pub summary: Option<String>,
    pub reason: Option<String>,
    pub queued_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// Paging for lists: rows with id greater than `after`, at most `limit` (default 100, max 1000).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[serde(default)]
    pub after: Option<i64>,
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogChunk {
    pub seq: u64,
    pub at: String,
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    pub chunks: Vec<LogChunk>,
}

// ----- runners -----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunnerInfo {
    pub id: i64,
    pub name: String,
    pub labels: Vec<String>,
    pub pool: String,
    pub capacity: u32,
    pub ephemeral: bool,
    /// The lifecycle state: `registered`, `active`, `draining`, `retiring`, `offline`, `gone`.
    pub state: String,
    /// What an operator wants to know, computed at read time: `idle`, `busy`, `draining`,
    /// `retiring`, `offline`, `registered` or `gone`.
    pub status: String,
    /// True exactly when an offered or running attempt references this runner, read in the same
    /// snapshot as everything else here. Never a stored flag.
    pub busy: bool,
    /// Whether the runner has a live session.
    pub online: bool,
    /// The offered and running attempts it holds.
    pub jobs: Vec<HeldAttempt>,
    pub created_at: String,
    pub last_seen_at: String,
    /// The newest event visible in the snapshot this answer was read from.
    pub as_of_event: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeldAttempt {
    pub job_id: i64,
    pub attempt: u32,
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunnerList {
    pub runners: Vec<RunnerInfo>,
}

/// The answer of retire-if-idle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RetireResponse {
    /// The runner will never be offered a job again; its machine may be terminated.
    Retired,
    /// The runner holds this attempt; nothing changed. Do not terminate it.
    Busy { job_id: i64, attempt: u32 },
}

// ----- workflow runs -----

/// A workflow file to run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRunRequest {
    /// The workflow YAML, at most 512 KiB.
    pub workflow: String,
    /// The file name used in error messages (`file:line:col`).
    #[serde(default)]
    pub file_name: Option<String>,
    /// `workflow_dispatch` inputs as text; typed as the workflow declares them.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Secrets for the run's `secrets` context. Kept only until the run completes; never
    /// returned by the API.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Run only this job and the jobs it needs.
    #[serde(default)]
    pub job: Option<String>,
    /// Ignore `runs-on`: any runner may take the run's jobs.
    #[serde(default)]
    pub any_runner: bool,
}

/// A workflow run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: i64,
    pub name: String,
    pub file_name: String,
    /// `in_progress` or `completed`.
    pub status: String,
    /// `success`, `failure` or `cancelled` once completed.
    pub conclusion: Option<String>,
    pub cancel_requested: bool,
    pub created_at: String,
    pub completed_at: Option<String>,
    /// The workflow's jobs in the order the file writes them.
    pub jobs: Vec<RunJob>,
}

/// One job of a workflow run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunJob {
    /// The job's id in the workflow.
    pub id: String,
    pub name: String,
    pub needs: Vec<String>,
    /// `waiting`, `running` or `completed`.
    pub status: String,
    /// `success`, `failure`, `cancelled` or `skipped` once completed.
    pub conclusion: Option<String>,
    pub outputs: BTreeMap<String, String>,
    /// Why the job was skipped or failed, when its legs do not say.
    pub message: Option<String>,
    /// One per matrix combination; empty for a job that did not start.
    pub legs: Vec<RunLeg>,
}

/// One matrix combination of a workflow job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunLeg {
    pub name: String,
    #[schema(value_type = Object)]
    pub matrix: Option<serde_json::Value>,
    /// The Baton job running it, once enqueued.
    pub job_id: Option<i64>,
    /// The newest attempt of that job.
    pub attempt: Option<u32>,
    /// `waiting`, `queued`, `running` or `completed`.
    pub status: String,
    pub conclusion: Option<String>,
    pub outputs: BTreeMap<String, String>,
    /// The step summary the leg wrote.
    pub summary: Option<String>,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunPageQuery {
    /// List runs with id below this one (newest first).
    #[serde(default)]
    pub before: Option<i64>,
    #[serde(default)]
    pub limit: Option<usize>,
}

// ----- autoscaler -----

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PoolQuery {
    /// The pool's name.
    pub pool: String,
}

/// A pool's demand and runners, read in one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolSnapshot {
    /// The newest event the snapshot includes.
    pub as_of_event: i64,
    /// The server's clock when it was read.
    pub now: String,
    /// Queued attempts of every pool, oldest first (at most 10,000).
    pub queued: Vec<QueuedAttempt>,
    /// The pool's runners that are not gone.
    pub runners: Vec<PoolRunner>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueuedAttempt {
    pub job_id: i64,
    pub attempt: u32,
    pub labels: Vec<String>,
    pub queued_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolRunner {
    pub id: i64,
    pub name: String,
    pub labels: Vec<String>,
    /// `registered` (never connected), `active`, `draining`, `retiring`, `offline`.
    pub state: String,
    pub ephemeral: bool,
    pub online: bool,
    /// Offered or running attempts that reference it.
    pub held: u32,
    /// Attempts ever offered to it.
    pub attempts: u32,
    /// Holding nothing since then; absent while busy.
    pub idle_since: Option<String>,
    pub created_at: String,
    pub last_seen_at: String,
}

/// Retire-if-idle on behalf of an autoscaler, with the readings that justified it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalerRetireRequest {
    /// What the scaler saw (pool, idle since, queue depth, ...), kept in the audit event.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub readings: serde_json::Value,
}

/// A scaler decision for the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalerEventRequest {
    /// `create`, `terminate` or `cleanup`.
    pub action: String,
    #[serde(default)]
    pub runner_id: Option<i64>,
    /// The readings behind the decision, a JSON object.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

// ----- webhooks -----

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where deliveries are POSTed (http or https).
    pub url: String,
    /// `workflow_job`, `workflow_run`, `runner`; empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// A `whsec_` secret (base64 of 24 to 64 bytes); generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// Deliver one at a time in event order: a failing delivery holds back the later ones.
    #[serde(default)]
    pub ordered: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookInfo {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub ordered: bool,
    /// Secrets currently signing deliveries (two during a rotation's overlap).
    pub active_secrets: usize,
    pub created_at: String,
}

/// An endpoint with its secret: answered only when it is created or its secret rotated.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookSecretResponse {
    pub webhook: WebhookInfo,
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateWebhookRequest {
    /// How long the old secret keeps signing besides the new one [default: 24 h].
    #[serde(default)]
    pub overlap_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryInfo {
    pub id: i64,
    pub webhook_id: i64,
    /// The `webhook-id` header: the same for every attempt and redelivery of a message.
    pub message_id: String,
    pub event: String,
    pub event_seq: i64,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: Option<u64>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryInfo>,
}

// ----- events -----

/// One row of the events stream (`data:` of a server-sent event whose `id:` is `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub seq: i64,
    pub at: String,
    /// `job.queued`, `job.offered`, `job.started`, `job.completed`, `runner.online`, ...
    pub kind: String,
    pub job_id: Option<i64>,
    pub attempt: Option<u32>,
    pub runner_id: Option<i64>,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this sequence number (the `Last-Event-ID` header takes precedence).
    #[serde(default)]
    pub after: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}
