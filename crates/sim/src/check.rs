//! The checkers: DESIGN §9's invariants 1-6 judged against the ledger and the store, and the
//! liveness bound.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_core::{AttemptState, EventKind, EventSeq, JobConclusion, JobId, JobState, RunnerId};
use baton_store::Store;

use crate::ledger::{Ending, Ledger};

/// A broken invariant, named by its number in DESIGN §9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: u8,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invariant {}: {}", self.invariant, self.detail)
    }
}

fn violation(invariant: u8, detail: impl Into<String>) -> Violation {
    Violation { invariant, detail: detail.into() }
}

/// What a machine was cut off from the server over, from the driver's record.
#[derive(Debug, Clone)]
pub struct Outage {
    pub machine: String,
    pub from: Duration,
    pub to: Duration,
}

/// Everything the checkers judge.
#[derive(Debug)]
pub struct Evidence<'a> {
    pub ledger: &'a Ledger,
    pub store: &'a Store,
    pub outages: &'a [Outage],
    /// When the simulation ended.
    pub end: Duration,
    /// Lease time-to-live: a finished worker's result must reach the server within it.
    pub lease_ttl: Duration,
    /// True when the workload saw every job finish within the liveness bound.
    pub all_finished_in_time: bool,
    /// The run was stopped at its first violation (negative controls only): jobs still open
    /// then are not a liveness failure.
    pub cut_short: bool,
}

pub fn check(evidence: &Evidence<'_>) -> Vec<Violation> {
    let mut violations = Vec::new();
    let jobs = match all_jobs(evidence.store) {
        Ok(jobs) => jobs,
        Err(error) => return vec![violation(6, format!("the store could not list jobs: {error}"))],
    };
    let events = match all_events(evidence.store) {
        Ok(events) => events,
        Err(error) => return vec![violation(1, format!("the store could not list events: {error}"))],
    };
    completed_once(&jobs, &events, &mut violations);
    completions_announced(evidence, &jobs, &mut violations);
    lost_only_when_cut_off(evidence, &events, &mut violations);
    finished_results_kept(evidence, &jobs, &mut violations);
    no_termination_under_a_job(evidence.ledger, &mut violations);
    one_worker_per_job(evidence, &mut violations);
    directories_private(evidence, &mut violations);
    every_job_concludes(evidence, &jobs, &mut violations);
    violations
}

type Jobs = BTreeMap<JobId, baton_store::JobView>;

fn all_jobs(store: &Store) -> Result<Jobs, baton_store::Error> {
    let mut jobs = BTreeMap::new();
    let mut after = JobId(0);
    loop {
        let page = store.jobs(after, 500)?;
        let Some(last) = page.last() else { break };
        after = last.job.id;
        for view in page {
            jobs.insert(view.job.id, view);
        }
    }
    Ok(jobs)
}

fn all_events(store: &Store) -> Result<Vec<baton_store::Event>, baton_store::Error> {
    let mut events = Vec::new();
    let mut after = EventSeq(0);
    loop {
        let page = store.events_after(after, 1000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        events.extend(page);
    }
    Ok(events)
}

/// Invariant 1, first half: every completed job yields `job.completed` exactly once.
fn completed_once(jobs: &Jobs, events: &[baton_store::Event], violations: &mut Vec<Violation>) {
    let mut completions: BTreeMap<JobId, usize> = BTreeMap::new();
    for event in events {
        if event.kind == EventKind::JobCompleted
            && let Some(job_id) = event.job_id
        {
            *completions.entry(job_id).or_default() += 1;
        }
    }
    for (job_id, view) in jobs {
        let count = completions.get(job_id).copied().unwrap_or(0);
        let expected = usize::from(view.job.state == JobState::Completed);
        if count != expected {
            violations.push(violation(
                1,
                format!("job {} is {} but has {count} job.completed events", job_id.0, view.job.state),
            ));
        }
    }
}

/// Invariant 1, its webhook: every completed job's `workflow_job` `completed` message reached
/// the receiver at least once (the workload waits for them before the run ends).
fn completions_announced(evidence: &Evidence<'_>, jobs: &Jobs, violations: &mut Vec<Violation>) {
    if evidence.cut_short {
        return;
    }
    for (job_id, view) in jobs {
        if view.job.state != JobState::Completed {
            continue;
        }
        if !evidence.ledger.completion_announced(job_id.0) {
            violations.push(violation(
                1,
                format!(
                    "job {} completed, but its workflow_job completed webhook never reached the receiver",
                    job_id.0
                ),
            ));
        }
    }
}

/// Invariant 1, the lease contract behind it: an attempt is declared lost only when its runner
/// stopped renewing. Its lease ends a ttl after the last renewal that reached the server, and
/// the runner sends the next one a third of a ttl later: so the machine must have been cut off
/// (or the server away) by then, at least two thirds of a ttl before the loss, or the machine
/// must have gone down within the lease. A server that declares attempts lost for any other
/// reason (F1: a connection that just dropped) reports finished or healthy jobs lost.
fn lost_only_when_cut_off(evidence: &Evidence<'_>, events: &[baton_store::Event], violations: &mut Vec<Violation>) {
    let names = runner_names(evidence.store);
    for event in events.iter().filter(|event| event.kind == EventKind::AttemptLost) {
        let (Some(job_id), Some(attempt), Some(runner_id)) = (event.job_id, event.attempt, event.runner_id) else {
            continue;
        };
        let Some(machine) = names.get(&runner_id) else { continue };
        let at = Duration::from_millis(event.at.0.saturating_sub(crate::EPOCH_MS));
        // The sweep notices an ended lease within its period, and messages take their latency:
        // half a second of slack covers both.
        let slack = Duration::from_millis(500);
        let from = lease_window_start(evidence, at);
        let missed_renewal_by = (at + evidence.lease_ttl / 3 + slack).saturating_sub(evidence.lease_ttl);
        let cut_off = evidence.outages.iter().any(|outage| {
            (outage.machine == *machine || outage.machine == crate::SERVER)
                && outage.from <= missed_renewal_by
                && outage.to >= from
        });
        let down =
            evidence.ledger.executions.iter().any(|execution| {
                execution.machine == *machine
                    && matches!(execution.end, Some((end, Ending::MachineDown)) if end >= from && end <= at)
            }) || evidence.ledger.downs.iter().any(|(name, when)| name == machine && *when >= from && *when <= at);
        if !cut_off && !down {
            violations.push(violation(
                1,
                format!(
                    "job {}/{} was declared lost at {:.3}s though {machine} was up and connected for the lease before",
                    job_id.0,
                    attempt.0,
                    at.as_secs_f64()
                ),
            ));
        }
    }
}

/// The earliest a lease declared lost at `at` can have been granted or last renewed: a ttl
/// (and a second of slack) before, and earlier still by every server outage since, because a
/// restarted server extends live leases by the time it was away (seed 3557: a machine went down,
/// two server outages later its lease ran out, more than a ttl after the machine went).
fn lease_window_start(evidence: &Evidence<'_>, at: Duration) -> Duration {
    let base = evidence.lease_ttl + Duration::from_secs(1);
    let mut from = at.saturating_sub(base);
    loop {
        let away: Duration = evidence
            .outages
            .iter()
            .filter(|outage| outage.machine == crate::SERVER && outage.to >= from && outage.from <= at)
            .map(|outage| outage.to.saturating_sub(outage.from))
            .sum();
        let earlier = at.saturating_sub(base + away);
        if earlier >= from {
            return from;
        }
        from = earlier;
    }
}

fn runner_names(store: &Store) -> BTreeMap<RunnerId, String> {
    all_runners(store).into_iter().map(|view| (view.runner.id, view.runner.name)).collect()
}

/// Every runner the store knows, gone ones included, by id (as far as the store answers).
pub(crate) fn all_runners(store: &Store) -> Vec<baton_store::RunnerView> {
    let mut runners = Vec::new();
    let mut after = RunnerId(0);
    while let Ok(page) = store.runners(after, 500) {
        let Some(last) = page.last() else { break };
        after = last.runner.id;
        runners.extend(page);
    }
    runners
}

/// Invariant 1, second half: a worker that ran its job to the end on a machine that stayed up,
/// connected, for a lease's length afterwards had its result recorded: its attempt is not lost.
fn finished_results_kept(evidence: &Evidence<'_>, jobs: &Jobs, violations: &mut Vec<Violation>) {
    for execution in &evidence.ledger.executions {
        let Some((finished, Ending::Finished(_))) = execution.end else { continue };
        let window_end = finished + evidence.lease_ttl;
        if window_end > evidence.end {
            continue;
        }
        let machine_went_down =
            evidence.ledger.executions.iter().any(|other| {
                other.machine == execution.machine
                    && matches!(other.end, Some((at, Ending::MachineDown)) if at >= finished && at <= window_end)
            }) || evidence.ledger.terminations.iter().any(|t| t.machine == execution.machine && t.at <= window_end);
        let cut_off = evidence
            .outages
            .iter()
            .any(|outage| outage.machine == execution.machine && outage.from <= window_end && outage.to >= finished);
        if machine_went_down || cut_off {
            continue;
        }
        let attempt = jobs
            .get(&JobId(execution.job_id))
            .and_then(|view| view.attempts.iter().find(|attempt| attempt.number.0 == execution.attempt));
        if let Some(attempt) = attempt
            && attempt.state == AttemptState::Lost
        {
            violations.push(violation(
                1,
                format!(
                    "job {}/{} finished on {} at {:.3}s, which stayed up and connected, but the attempt is lost ({})",
                    execution.job_id,
                    execution.attempt,
                    execution.machine,
                    finished.as_secs_f64(),
                    attempt.reason.as_deref().unwrap_or("no reason")
                ),
            ));
        }
    }
}

/// Invariant 3: no machine is terminated while an attempt it runs is offered or running.
fn no_termination_under_a_job(ledger: &Ledger, violations: &mut Vec<Violation>) {
    for termination in &ledger.terminations {
        for (job_id, attempt) in &termination.held {
            violations.push(violation(
                3,
                format!(
                    "{} was terminated at {:.3}s while job {job_id}/{attempt} was offered to or running on it",
                    termination.machine,
                    termination.at.as_secs_f64()
                ),
            ));
        }
        for execution in &ledger.executions {
            if execution.machine == termination.machine
                && execution.start <= termination.at
                && matches!(execution.end, Some((at, Ending::MachineDown)) if at == termination.at)
            {
                violations.push(violation(
                    3,
                    format!(
                        "{} was terminated at {:.3}s while its worker executed job {}/{}",
                        termination.machine,
                        termination.at.as_secs_f64(),
                        execution.job_id,
                        execution.attempt
                    ),
                ));
            }
        }
    }
}

fn interval(execution: &crate::ledger::Execution, end: Duration) -> (Duration, Duration) {
    (execution.start, execution.end.map(|(at, _)| at).unwrap_or(end))
}

fn overlap(a: (Duration, Duration), b: (Duration, Duration)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Invariant 4: at most one worker executes a given job at any instant, across attempts.
fn one_worker_per_job(evidence: &Evidence<'_>, violations: &mut Vec<Violation>) {
    let mut by_job: BTreeMap<i64, Vec<&crate::ledger::Execution>> = BTreeMap::new();
    for execution in &evidence.ledger.executions {
        by_job.entry(execution.job_id).or_default().push(execution);
    }
    for (job_id, executions) in by_job {
        for (index, first) in executions.iter().enumerate() {
            for second in &executions[index + 1..] {
                let (a, b) = (interval(first, evidence.end), interval(second, evidence.end));
                if overlap(a, b) {
                    violations.push(violation(
                        4,
                        format!(
                            "job {job_id} ran twice at once: attempt {} on {} over {:.3}-{:.3}s and attempt {} on {} over {:.3}-{:.3}s",
                            first.attempt,
                            first.machine,
                            a.0.as_secs_f64(),
                            a.1.as_secs_f64(),
                            second.attempt,
                            second.machine,
                            b.0.as_secs_f64(),
                            b.1.as_secs_f64()
                        ),
                    ));
                }
            }
        }
    }
}

/// Invariant 5: two jobs never share a directory; a job's clean-up never touches another's
/// files (the workers saw their own files vanish: `observed`).
fn directories_private(evidence: &Evidence<'_>, violations: &mut Vec<Violation>) {
    let executions = &evidence.ledger.executions;
    for (index, first) in executions.iter().enumerate() {
        for second in &executions[index + 1..] {
            if first.dir == second.dir
                && first.machine == second.machine
                && overlap(interval(first, evidence.end), interval(second, evidence.end))
            {
                violations.push(violation(
                    5,
                    format!(
                        "jobs {}/{} and {}/{} used the directory {} on {} at once",
                        first.job_id,
                        first.attempt,
                        second.job_id,
                        second.attempt,
                        first.dir.display(),
                        first.machine
                    ),
                ));
            }
        }
    }
    for problem in &evidence.ledger.observed {
        violations.push(violation(5, problem.clone()));
    }
}

/// Invariant 6 and liveness: every submitted job ends, within the bound after faults stop,
/// completed with a conclusion (and a reason when it did not succeed on its own terms).
fn every_job_concludes(evidence: &Evidence<'_>, jobs: &Jobs, violations: &mut Vec<Violation>) {
    if evidence.cut_short {
        return;
    }
    if !evidence.all_finished_in_time {
        violations.push(violation(6, "not every job concluded within the liveness bound after the faults stopped"));
    }
    for (job_id, view) in jobs {
        match (view.job.state, view.job.conclusion) {
            (JobState::Completed, Some(JobConclusion::InfrastructureFailure)) if view.job.reason.is_none() => {
                violations.push(violation(6, format!("job {} failed on infrastructure without a reason", job_id.0)))
            }
            (JobState::Completed, Some(_)) => {}
            (state, conclusion) => violations.push(violation(
                6,
                format!("job {} did not conclude: state {state}, conclusion {conclusion:?}", job_id.0),
            )),
        }
    }
}

/// Invariant 2 at one instant: the busy flag the API serves for each runner equals whether an
/// offered or running attempt references it, computed independently from the jobs.
pub fn busy_matches_truth(store: &Store) -> Vec<Violation> {
    let mut violations = Vec::new();
    let Ok(jobs) = all_jobs(store) else { return violations };
    let mut holding: BTreeMap<RunnerId, usize> = BTreeMap::new();
    for view in jobs.values() {
        for attempt in &view.attempts {
            if matches!(attempt.state, AttemptState::Offered | AttemptState::Running)
                && let Some(runner_id) = attempt.runner_id
            {
                *holding.entry(runner_id).or_default() += 1;
            }
        }
    }
    for view in all_runners(store) {
        let truth = holding.get(&view.runner.id).copied().unwrap_or(0) > 0;
        if view.busy() != truth {
            violations.push(violation(
                2,
                format!("runner {} is served as busy={} but the jobs say busy={truth}", view.runner.name, view.busy()),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ledger::{Execution, Termination};

    fn execution(machine: &str, job_id: i64, attempt: u32, dir: &str, from: u64, to: u64) -> Execution {
        Execution {
            machine: machine.into(),
            job_id,
            attempt,
            dir: PathBuf::from(dir),
            start: Duration::from_millis(from),
            end: Some((Duration::from_millis(to), Ending::Finished(baton_api::AttemptResult::Success))),
        }
    }

    fn evidence<'a>(ledger: &'a Ledger, store: &'a Store) -> Evidence<'a> {
        Evidence {
            ledger,
            store,
            outages: &[],
            end: Duration::from_secs(100),
            lease_ttl: Duration::from_secs(3),
            all_finished_in_time: true,
            cut_short: false,
        }
    }

    #[test]
    fn two_workers_of_one_job_at_once_break_invariant_4() {
        let store = Store::open_memory(baton_core::Timeouts::DEFAULT);
        let mut ledger = Ledger::default();
        ledger.executions.push(execution("a", 1, 1, "/w/a/1/1", 0, 500));
        ledger.executions.push(execution("b", 1, 2, "/w/b/1/2", 400, 900));
        ledger.executions.push(execution("c", 2, 1, "/w/c/2/1", 0, 900));
        let mut violations = Vec::new();
        one_worker_per_job(&evidence(&ledger, &store), &mut violations);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].invariant, 4);
        // Back to back is fine.
        ledger.executions[1].start = Duration::from_millis(500);
        let mut violations = Vec::new();
        one_worker_per_job(&evidence(&ledger, &store), &mut violations);
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn a_shared_directory_at_once_or_a_vanished_file_breaks_invariant_5() {
        let store = Store::open_memory(baton_core::Timeouts::DEFAULT);
        let mut ledger = Ledger::default();
        ledger.executions.push(execution("a", 1, 1, "/w/a/_temp", 0, 500));
        ledger.executions.push(execution("a", 2, 1, "/w/a/_temp", 499, 900));
        ledger.executions.push(execution("b", 3, 1, "/w/a/_temp", 0, 900));
        ledger.observed.push("job 2/1: its file was removed while it ran".into());
        let mut violations = Vec::new();
        directories_private(&evidence(&ledger, &store), &mut violations);
        assert_eq!(violations.iter().filter(|violation| violation.invariant == 5).count(), 2, "{violations:?}");
    }

    #[test]
    fn terminating_a_machine_under_a_job_breaks_invariant_3() {
        let mut ledger = Ledger::default();
        let mut running = execution("a", 1, 1, "/w/a/1/1", 0, 500);
        running.end = Some((Duration::from_millis(500), Ending::MachineDown));
        ledger.executions.push(running);
        ledger.terminations.push(Termination {
            machine: "a".into(),
            at: Duration::from_millis(500),
            held: vec![(1, 1)],
        });
        ledger.terminations.push(Termination { machine: "b".into(), at: Duration::from_millis(500), held: vec![] });
        let mut violations = Vec::new();
        no_termination_under_a_job(&ledger, &mut violations);
        assert_eq!(violations.len(), 2, "one for the store's record, one for the ledger's: {violations:?}");
        assert!(violations.iter().all(|violation| violation.invariant == 3));
    }

    #[test]
    fn a_completed_job_without_its_webhook_breaks_invariant_1() {
        let store = Store::open_memory(baton_core::Timeouts::DEFAULT);
        let new = baton_store::NewJob { name: "j".into(), labels: vec![], spec: "{}".into(), max_attempts: 3 };
        let job = store.enqueue(&new, baton_core::Timestamp(1)).expect("enqueue");
        store.cancel_job(job.job.id, baton_core::Timestamp(2)).expect("cancel");
        let mut ledger = Ledger::default();
        let received = |action: &str| crate::ledger::Received {
            at: Duration::from_millis(5),
            message_id: "msg_1_1".into(),
            job_id: Some(job.job.id.0),
            action: action.into(),
        };
        ledger.webhooks.push(received("queued"));
        let missing = |ledger: &Ledger| {
            let mut violations = Vec::new();
            completions_announced(&evidence(ledger, &store), &all_jobs(&store).expect("jobs"), &mut violations);
            violations
        };
        let violations = missing(&ledger);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].invariant, 1);
        ledger.webhooks.push(received("completed"));
        assert!(missing(&ledger).is_empty());
    }

    #[test]
    fn jobs_left_unfinished_break_invariant_6() {
        let store = Store::open_memory(baton_core::Timeouts::DEFAULT);
        let new = baton_store::NewJob { name: "j".into(), labels: vec![], spec: "{}".into(), max_attempts: 3 };
        store.enqueue(&new, baton_core::Timestamp(1)).expect("enqueue");
        let ledger = Ledger::default();
        let mut evidence = evidence(&ledger, &store);
        evidence.all_finished_in_time = false;
        let violations = check(&evidence);
        assert_eq!(violations.iter().filter(|violation| violation.invariant == 6).count(), 2, "{violations:?}");
    }
}
