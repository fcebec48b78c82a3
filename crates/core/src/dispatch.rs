//! Dispatch matching: which queued job goes to which runner.
//!
//! The store calls [`plan`] inside the assign transaction with the queued jobs (oldest first)
//! and the runners that could take work, and writes the offers it returns. Free slots are the
//! smaller of what the runner last reported and what its capacity leaves after the attempts it
//! already holds, so the server never offers more than the runner said it can start (F3).

use crate::{JobId, Runner, RunnerId};

/// True when every label the job asks for is carried by the runner. Labels are compared
/// case-insensitively, as GitHub does; both lists are stored lower-case.
pub fn labels_match(runner_labels: &[String], job_labels: &[String]) -> bool {
    job_labels.iter().all(|wanted| runner_labels.iter().any(|have| have == wanted))
}

/// Normalises a label list: trimmed, lower-case, sorted, without duplicates.
pub fn normalize_labels<I, S>(labels: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = labels
        .into_iter()
        .map(|label| label.as_ref().trim().to_lowercase())
        .filter(|label| !label.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A runner is busy exactly when at least one offered or running attempt references it. This
/// is computed from the attempts at read time; there is no stored flag that could lag (F2).
pub fn is_busy(held_attempts: u32) -> bool {
    held_attempts > 0
}

/// Slots on `runner` that may receive an offer now, given the attempts it already holds
/// (offered or running). Zero unless the runner is active.
pub fn free_slots(runner: &Runner, held_attempts: u32) -> u32 {
    if !runner.state.takes_offers() {
        return 0;
    }
    // An ephemeral runner runs one job in its life: one slot, and none once it holds one.
    let capacity = if runner.ephemeral { 1 } else { runner.capacity };
    runner.reported_free_slots.min(capacity.saturating_sub(held_attempts))
}

/// A runner that may take offers, with its free slots.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub runner_id: RunnerId,
    pub labels: &'a [String],
    pub free_slots: u32,
}

/// A queued job waiting for a runner.
#[derive(Debug, Clone)]
pub struct Waiting<'a> {
    pub job_id: JobId,
    pub labels: &'a [String],
}

/// Pairs queued jobs with runners. Jobs are served in the order given (oldest first); each goes
/// to the matching runner with the most free slots, ties broken by the lowest runner id, which
/// spreads load and keeps the plan deterministic. No runner receives more offers than its free
/// slots.
pub fn plan(waiting: &[Waiting<'_>], candidates: &mut [Candidate<'_>]) -> Vec<(JobId, RunnerId)> {
    let mut offers = Vec::new();
    for job in waiting {
        let best = candidates
            .iter_mut()
            .filter(|candidate| candidate.free_slots > 0 && labels_match(candidate.labels, job.labels))
            .max_by(|a, b| a.free_slots.cmp(&b.free_slots).then(b.runner_id.cmp(&a.runner_id)));
        if let Some(candidate) = best {
            candidate.free_slots -= 1;
            offers.push((job.job_id, candidate.runner_id));
        }
        if candidates.iter().all(|candidate| candidate.free_slots == 0) {
            break;
        }
    }
    offers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RunnerState, Timestamp};

    fn runner(state: RunnerState, capacity: u32, reported: u32, ephemeral: bool) -> Runner {
        Runner {
            id: RunnerId(1),
            name: "r1".into(),
            labels: vec!["linux".into()],
            pool: "default".into(),
            capacity,
            ephemeral,
            state,
            reported_free_slots: reported,
            session_id: None,
            credential_hash: None,
            created_at: Timestamp::ZERO,
            last_seen_at: Timestamp::ZERO,
        }
    }

    #[test]
    fn free_slots_table() {
        use RunnerState::*;
        // (state, capacity, reported free, ephemeral, held attempts) -> free slots
        let cases = [
            (Active, 2, 2, false, 0, 2),
            (Active, 2, 2, false, 1, 1),
            (Active, 2, 1, false, 0, 1), // the runner's report is the limit: a worker is still being reaped
            (Active, 2, 0, false, 0, 0),
            (Active, 2, 5, false, 0, 2), // a report above capacity is capped
            (Active, 1, 1, true, 0, 1),
            (Active, 4, 4, true, 0, 1), // ephemeral: one job in its life
            (Active, 4, 4, true, 1, 0),
            (Registered, 2, 2, false, 0, 0),
            (Draining, 2, 2, false, 0, 0),
            (Retiring, 2, 2, false, 0, 0),
            (Offline, 2, 2, false, 0, 0),
            (Gone, 2, 2, false, 0, 0),
        ];
        for (state, capacity, reported, ephemeral, held, want) in cases {
            let got = free_slots(&runner(state, capacity, reported, ephemeral), held);
            assert_eq!(got, want, "{state} cap={capacity} reported={reported} eph={ephemeral} held={held}");
        }
    }

    #[test]
    fn labels_are_a_subset_match() {
        let have = normalize_labels(["Linux", "X64", "self-hosted"]);
        assert!(labels_match(&have, &normalize_labels(["linux"])));
        assert!(labels_match(&have, &normalize_labels(["self-hosted", "LINUX"])));
        assert!(labels_match(&have, &[]));
        assert!(!labels_match(&have, &normalize_labels(["linux", "gpu"])));
    }

    #[test]
    fn plan_respects_labels_and_slots() {
        let linux = normalize_labels(["linux"]);
        let gpu = normalize_labels(["linux", "gpu"]);
        let waiting = [
            Waiting { job_id: JobId(1), labels: &gpu },
            Waiting { job_id: JobId(2), labels: &linux },
            Waiting { job_id: JobId(3), labels: &linux },
            Waiting { job_id: JobId(4), labels: &linux },
        ];
        let mut candidates = [
            Candidate { runner_id: RunnerId(10), labels: &linux, free_slots: 1 },
            Candidate { runner_id: RunnerId(11), labels: &gpu, free_slots: 1 },
        ];
        let offers = plan(&waiting, &mut candidates);
        assert_eq!(offers, vec![(JobId(1), RunnerId(11)), (JobId(2), RunnerId(10))]);
        assert!(candidates.iter().all(|candidate| candidate.free_slots == 0));
    }

    #[test]
    fn plan_spreads_over_the_most_free_runner() {
        let linux = normalize_labels(["linux"]);
        let waiting: Vec<_> = (1..=3).map(|id| Waiting { job_id: JobId(id), labels: &linux }).collect();
        let mut candidates = [
            Candidate { runner_id: RunnerId(1), labels: &linux, free_slots: 1 },
            Candidate { runner_id: RunnerId(2), labels: &linux, free_slots: 3 },
        ];
        let offers = plan(&waiting, &mut candidates);
        assert_eq!(offers, vec![(JobId(1), RunnerId(2)), (JobId(2), RunnerId(2)), (JobId(3), RunnerId(1))]);
    }

    proptest::proptest! {
        #[test]
        fn plan_never_exceeds_free_slots(
            slots in proptest::collection::vec(0u32..4, 1..6),
            n_jobs in 0usize..20,
        ) {
            let linux = normalize_labels(["linux"]);
            let waiting: Vec<_> = (0..n_jobs).map(|id| Waiting { job_id: JobId(id as i64), labels: &linux }).collect();
            let mut candidates: Vec<_> = slots.iter().enumerate()
                .map(|(idx, &free)| Candidate { runner_id: RunnerId(idx as i64), labels: &linux, free_slots: free })
                .collect();
            let offers = plan(&waiting, &mut candidates);
            let total: u32 = slots.iter().sum();
            proptest::prop_assert_eq!(offers.len(), n_jobs.min(total as usize));
            for (idx, &free) in slots.iter().enumerate() {
                let given = offers.iter().filter(|(_, runner)| runner.0 == idx as i64).count();
                proptest::prop_assert!(given as u32 <= free);
            }
        }
    }
}
