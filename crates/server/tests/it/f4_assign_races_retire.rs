//! F4 (seeds/003): a scaler checked "idle", a job was assigned, and the scaler then terminated
//! the machine. In Baton, assign and retire-if-idle are each one transaction on one truth, so
//! of two racing calls at most one can win.

use std::time::{Duration, Instant};

use baton_api as api;

use crate::common::{TestRunner, TestServer, fast_timeouts};

pub const RACES: usize = 10_000;
pub const LANES: usize = 8;
const TIME_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct Tally {
    races: usize,
    assign_won: usize,
    retire_won: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assign_and_retire_never_both_win() {
    let mut server = TestServer::start(fast_timeouts()).await;
    let deadline = Instant::now() + TIME_LIMIT;
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let sides =
            Sides { enqueue: server.admin.clone(), retire: server.admin.clone(), runner_url: server.url.clone() };
        lanes.push(tokio::spawn(async move { run_lane(lane, sides, RACES / LANES, deadline).await }));
    }
    let total = tally(lanes).await;
    check_tally(&total, RACES);
    check_no_offer_after_retiring(&server.all_events().await);
    server.stop().await;
}

/// Where each party of a race sends its calls: the same server, or different replicas.
pub struct Sides {
    /// The admin client that enqueues the job.
    pub enqueue: baton_client::Client,
    /// The admin client that asks to retire the runner if idle.
    pub retire: baton_client::Client,
    /// The server the runner registers, polls and works through.
    pub runner_url: String,
}

pub async fn tally(lanes: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::default();
    for lane in lanes {
        let tally = lane.await.expect("lane task");
        total.races += tally.races;
        total.assign_won += tally.assign_won;
        total.retire_won += tally.retire_won;
    }
    eprintln!("f4: {total:?}");
    total
}

pub fn check_tally(total: &Tally, races: usize) {
    assert_eq!(total.races, races, "all races ran within the time limit");
    assert_eq!(total.assign_won + total.retire_won, total.races, "every race had exactly one winner");
    assert!(total.assign_won > 0 && total.retire_won > 0, "both orders happened, so the race was exercised");
}

/// From the log: no runner was offered a job after it started retiring.
pub fn check_no_offer_after_retiring(events: &[api::Event]) {
    let mut retired = std::collections::HashSet::new();
    for event in events {
        match event.kind.as_str() {
            "runner.retiring" => {
                retired.insert(event.runner_id);
            }
            "job.offered" => assert!(!retired.contains(&event.runner_id), "offer to a retired runner: {event:?}"),
            _ => {}
        }
    }
}

pub async fn run_lane(lane: usize, sides: Sides, races: usize, deadline: Instant) -> Tally {
    let Sides { enqueue: admin, retire: retirer, runner_url: url } = sides;
    let label = format!("lane-{lane}");
    let mut tally = Tally::default();
    let mut generation = 0;
    let mut runner = fresh_runner(&admin, &url, &label, generation).await;
    while tally.races < races && Instant::now() < deadline {
        // The runner reports a free slot; nothing is queued for its lane, so nothing is offered.
        let idle = runner.poll(Duration::ZERO, 1).await;
        assert!(idle.iter().all(|message| !matches!(message.body, api::MessageBody::JobOffer(_))));

        let spec = crate::common::job_spec("race", &[label.as_str()]);
        let (enqueued, retire) = tokio::join!(admin.enqueue_job(&spec), retirer.retire_runner(runner.id));
        let job = enqueued.expect("enqueue");
        let retire = retire.expect("retire-if-idle answers");
        let job = admin.get_job(job.id).await.expect("get job");
        let offered_to_runner = job.attempts[0].runner_id == Some(runner.id);
        tally.races += 1;
        match retire {
            api::RetireResponse::Retired => {
                assert!(
                    !offered_to_runner,
                    "lane {lane}: retire won, yet job {} was offered to runner {}",
                    job.id, runner.id
                );
                tally.retire_won += 1;
                // The retired runner is told to leave and is never offered the job.
                let messages = runner.poll(Duration::ZERO, 1).await;
                assert!(messages.iter().all(|message| !matches!(message.body, api::MessageBody::JobOffer(_))));
                assert!(messages.iter().any(|message| message.body == api::MessageBody::Retire));
                admin.cancel_job(job.id).await.expect("cancel the queued job");
                generation += 1;
                runner = fresh_runner(&admin, &url, &label, generation).await;
            }
            api::RetireResponse::Busy { job_id, .. } => {
                assert!(offered_to_runner, "lane {lane}: retire said busy but the job went elsewhere");
                assert_eq!(job_id, job.id);
                tally.assign_won += 1;
                let offer = runner.next_offer().await;
                runner.accept(&offer).await.expect("accept");
                runner.complete(&offer, api::AttemptResult::Success).await.expect("complete");
            }
        }
    }
    tally
}

async fn fresh_runner(admin: &baton_client::Client, url: &str, label: &str, generation: usize) -> TestRunner {
    let token = admin
        .create_registration_token(&api::CreateRegistrationTokenRequest { max_uses: Some(1), ..Default::default() })
        .await
        .expect("token")
        .token;
    let anonymous = baton_client::Client::new(url, None).expect("client");
    let request = api::RegisterRequest {
        token,
        name: format!("{label}-{generation}"),
        labels: vec![label.to_string()],
        capacity: 1,
        ephemeral: false,
    };
    TestRunner::register(&anonymous, &request).await
}
