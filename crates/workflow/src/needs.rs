//! Validation of `needs:` between jobs (unknown jobs, cycles) and the topological order jobs can run in.

use std::collections::HashMap;

use crate::error::{ErrorKind, WorkflowError};
use crate::model::Workflow;

/// Reports `needs` entries naming unknown jobs and every dependency cycle, each with the jobs involved.
pub fn validate_needs(workflow: &Workflow) -> Vec<WorkflowError> {
    let mut errors = Vec::new();
    let index: HashMap<&str, usize> =
        workflow.jobs.iter().enumerate().map(|(position, job)| (job.id.as_str(), position)).collect();
    for job in &workflow.jobs {
        for need in &job.needs {
            if !index.contains_key(need.value.as_str()) {
                let known: Vec<&str> = workflow.jobs.iter().map(|job| job.id.as_str()).collect();
                let hint = match crate::parse::did_you_mean(&need.value, known.iter().copied()) {
                    Some(suggestion) => format!("did you mean `{suggestion}`?"),
                    None => format!("the jobs of this workflow are: {}", known.join(", ")),
                };
                errors.push(WorkflowError::at(
                    &workflow.file,
                    need.position,
                    ErrorKind::Needs,
                    format!("job `{}` needs unknown job `{}`", job.id, need.value),
                    hint,
                ));
            }
        }
    }
    // A depth-first search colours jobs white (unvisited), grey (on the current path) and black (finished); an
    // edge to a grey job closes a cycle, whose path is the stack from that job onwards.
    let mut colour = vec![0u8; workflow.jobs.len()];
    for start in 0..workflow.jobs.len() {
        if colour[start] != 0 {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        colour[start] = 1;
        while let Some((job, next_edge)) = path.last().copied() {
            let needs = &workflow.jobs[job].needs;
            if next_edge >= needs.len() {
                colour[job] = 2;
                path.pop();
                continue;
            }
            if let Some(last) = path.last_mut() {
                last.1 += 1;
            }
            let Some(&target) = index.get(needs[next_edge].value.as_str()) else {
                continue;
            };
            match colour[target] {
                0 => {
                    colour[target] = 1;
                    path.push((target, 0));
                }
                1 => {
                    let from = path.iter().position(|(on_path, _)| *on_path == target).unwrap_or(0);
                    let mut cycle: Vec<&str> =
                        path[from..].iter().map(|(id, _)| workflow.jobs[*id].id.as_str()).collect();
                    cycle.push(workflow.jobs[target].id.as_str());
                    errors.push(WorkflowError::at(
                        &workflow.file,
                        needs[next_edge].position,
                        ErrorKind::Needs,
                        format!("the `needs` of the jobs form a cycle: {}", cycle.join(" -> ")),
                        format!(
                            "remove `{}` from the `needs` of job `{}`, or another link of the cycle",
                            workflow.jobs[target].id, workflow.jobs[job].id
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    errors
}

impl Workflow {
    /// The job ids in an order in which every job comes after the jobs it needs; among jobs that are ready at
    /// the same time, the order they are written in. Unknown needs are ignored, and jobs in a cycle (which
    /// [`crate::parse_workflow`] rejects) are left out.
    pub fn topological_order(&self) -> Vec<&str> {
        let index: HashMap<&str, usize> =
            self.jobs.iter().enumerate().map(|(position, job)| (job.id.as_str(), position)).collect();
        let mut remaining: Vec<usize> = self
            .jobs
            .iter()
            .map(|job| job.needs.iter().filter(|need| index.contains_key(need.value.as_str())).count())
            .collect();
        let mut done = vec![false; self.jobs.len()];
        let mut order = Vec::with_capacity(self.jobs.len());
        while let Some(ready) = (0..self.jobs.len()).find(|job| !done[*job] && remaining[*job] == 0) {
            done[ready] = true;
            order.push(self.jobs[ready].id.as_str());
            let ready_id = self.jobs[ready].id.as_str();
            for (job, dependant) in self.jobs.iter().enumerate() {
                remaining[job] =
                    remaining[job].saturating_sub(dependant.needs.iter().filter(|need| need.value == ready_id).count());
            }
        }
        order
    }
}
