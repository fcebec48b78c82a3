//! The sweepers: offer accept-timeouts, lease expiry, session expiry.
//!
//! Each sweep is one store transaction and safe to run anywhere at any time: it only acts on
//! deadlines that have passed on the server's clock. Before its first sweep the server records
//! itself alive, which extends live deadlines by the length of any outage.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::state::AppState;

pub fn spawn(state: Arc<AppState>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            sweep_once(&state, interval).await;
        }
    });
}

/// Runs every sweep once. Errors are logged; the next tick tries again.
pub async fn sweep_once(state: &AppState, interval: Duration) {
    let now = state.now();
    match state.run(move |store| store.mark_alive(now, interval)).await {
        Ok(Some(outage)) => {
            tracing::warn!(outage_ms = outage.as_millis() as u64, "control plane was away; live deadlines extended")
        }
        Ok(None) => {}
        Err(error) => tracing::error!(?error, "record liveness"),
    }
    let now = state.now();
    if let Err(error) = state.run(move |store| store.expire_offers(now)).await {
        tracing::error!(?error, "expire offers");
    }
    if let Err(error) = state.run(move |store| store.expire_leases(now)).await {
        tracing::error!(?error, "expire leases");
    }
    if let Err(error) = state.run(move |store| store.expire_sessions(now)).await {
        tracing::error!(?error, "expire sessions");
    }
}
