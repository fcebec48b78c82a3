//! `GET /api/v1/events`: the events table as server-sent events.
//!
//! Each SSE `id:` is the event's sequence number, so a client that reconnects with
//! `Last-Event-ID` resumes exactly after the last event it saw. The stream waits on the commit
//! notification, not on a timer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use baton_api as api;
use baton_core::EventSeq;
use futures_util::Stream;
use tokio::sync::watch;

use super::ApiQuery;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::state::AppState;

const BATCH: usize = 500;

struct Cursor {
    state: Arc<AppState>,
    after: EventSeq,
    pending: VecDeque<baton_store::Event>,
    changes: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
}

/// Streams events after `Last-Event-ID` (or `?after=`), then every new one as it commits.
#[utoipa::path(get, path = "/api/v1/events", tag = "operator", security(("bearer" = [])), params(api::EventsQuery),
    responses((status = 200, description = "text/event-stream of `Event` objects; `id:` is the sequence", content_type = "text/event-stream", body = api::Event)))]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<api::EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let after =
        match headers.get("last-event-id") {
            Some(value) => value.to_str().ok().and_then(|text| text.trim().parse::<i64>().ok()).ok_or_else(|| {
                ApiError::bad_request("invalid_header", "Last-Event-ID must be an event sequence number")
            })?,
            None => query.after.unwrap_or(0),
        };
    let cursor = Cursor {
        changes: state.hub.subscribe_events(),
        shutdown: state.shutdown.clone(),
        state,
        after: EventSeq(after.max(0)),
        pending: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(cursor, next_event);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn next_event(mut cursor: Cursor) -> Option<(Result<SseEvent, Infallible>, Cursor)> {
    loop {
        if let Some(event) = cursor.pending.pop_front() {
            cursor.after = event.seq;
            let body = super::event(&event);
            let data = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
            let sse = SseEvent::default().id(event.seq.0.to_string()).event(body.kind).data(data);
            return Some((Ok(sse), cursor));
        }
        if *cursor.shutdown.borrow() {
            return None;
        }
        // Mark the current generation seen before reading, so a commit after the read wakes us.
        cursor.changes.borrow_and_update();
        let after = cursor.after;
        match cursor.state.run(move |store| store.events_after(after, BATCH)).await {
            Ok(batch) if !batch.is_empty() => {
                cursor.pending.extend(batch);
                continue;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(?error, "read events for a stream");
                return None;
            }
        }
        tokio::select! {
            biased;
            changed = cursor.changes.changed() => if changed.is_err() { return None; },
            _ = cursor.shutdown.wait_for(|stop| *stop) => return None,
        }
    }
}
