//! Log upload: batched, sequenced, spooled to disk, in order, exactly once.
//!
//! Log text from the worker is cut into batches of at most 64 KiB or 200 ms. Each batch gets the
//! next sequence number and is appended to the attempt's spool file before any upload is
//! tried, so the disk, not memory, holds whatever the server has not acknowledged yet. The
//! uploader sends batches strictly in order and retries a batch until the server stores it;
//! the server acknowledges a repeated batch without storing it twice, so a retry after a lost
//! answer never duplicates a line, and nothing later is sent before it, so there are no gaps.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_api as api;
use baton_client::{Backoff, Client};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Largest batch, in bytes of log text (the server's chunk limit).
pub const BATCH_BYTES_MAX: usize = 64 * 1024;
/// Longest a line waits before its batch is sent.
pub const BATCH_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, Serialize, Deserialize)]
struct SpooledBatch {
    seq: u64,
    data: String,
}

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Every batch is stored on the server.
    Complete,
    /// The server said the lease is stale: the rest will never be accepted.
    Fenced,
}

/// Feeds log text to a background uploader.
#[derive(Debug)]
pub struct LogSink {
    sender: Option<mpsc::UnboundedSender<String>>,
    spooled: Option<tokio::sync::oneshot::Receiver<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<Upload>>,
}

impl LogSink {
    /// Starts batching and uploading to the attempt's log, spooling in `spool_path`.
    pub fn start(client: Client, job_id: i64, attempt: u32, fence: api::FencedRequest, spool_path: PathBuf) -> LogSink {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (spooled_tx, spooled_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(client, job_id, attempt, fence, spool_path, receiver, spooled_tx));
        LogSink { sender: Some(sender), spooled: Some(spooled_rx), task }
    }

    pub fn push(&self, text: String) {
        // The uploader ends only after `finish`, or after a fence, when text no longer matters.
        if let Some(sender) = &self.sender {
            let _ = sender.send(text);
        }
    }

    /// Ends the input and waits until every line is on disk in the spool, so that a completion
    /// persisted after this never outlives the end of its log.
    pub async fn close(&mut self) {
        self.sender = None;
        if let Some(spooled) = self.spooled.take() {
            let _ = spooled.await;
        }
    }

    /// Waits until every batch is stored on the server (or the lease is gone).
    pub async fn finish(mut self) -> anyhow::Result<Upload> {
        self.close().await;
        self.task.await?
    }

    /// Stops uploading at once.
    pub fn abort(self) {
        self.task.abort();
    }
}

async fn run(
    client: Client,
    job_id: i64,
    attempt: u32,
    fence: api::FencedRequest,
    spool_path: PathBuf,
    mut receiver: mpsc::UnboundedReceiver<String>,
    spooled: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<Upload> {
    let mut spooled = Some(spooled);
    let mut spool = Spool::create(&spool_path)?;
    let mut batch = String::new();
    let mut batch_started: Option<tokio::time::Instant> = None;
    let mut open = true;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        // Cut a batch when it is full, old enough, or the input is over.
        let due = batch_started.is_some_and(|started| started.elapsed() >= BATCH_DELAY);
        if !batch.is_empty() && (batch.len() >= BATCH_BYTES_MAX || due || !open) {
            spool.append(&std::mem::take(&mut batch))?;
            batch_started = None;
        }
        if !open
            && batch.is_empty()
            && let Some(spooled) = spooled.take()
        {
            let _ = spooled.send(());
        }
        // Upload everything spooled, in order, unless waiting out a failure.
        if retry_at.is_none_or(|at| tokio::time::Instant::now() >= at) {
            retry_at = None;
            while let Some((next, length)) = spool.peek()? {
                let request = api::LogUploadRequest {
                    epoch: fence.epoch,
                    token: fence.token.clone(),
                    seq: next.seq,
                    data: next.data,
                };
                // The end of the log goes to the spool while an upload is in flight: a slow or
                // hanging upload (a server that went away mid-request) must not hold back the
                // completion, which is persisted only once the log is spooled (found by the
                // fleet simulator, seed 251: the machine restarted before the completion was
                // on disk, and a finished job's result was lost).
                let upload = client.upload_log(job_id, attempt, &request);
                tokio::pin!(upload);
                let outcome = loop {
                    tokio::select! {
                        biased;
                        outcome = &mut upload => break outcome,
                        text = receiver.recv(), if open => match text {
                            Some(text) => {
                                push_split(&mut batch, &text, &mut spool)?;
                                if batch_started.is_none() && !batch.is_empty() {
                                    batch_started = Some(tokio::time::Instant::now());
                                }
                            }
                            None => {
                                open = false;
                                if !batch.is_empty() {
                                    spool.append(&std::mem::take(&mut batch))?;
                                    batch_started = None;
                                }
                                if let Some(spooled) = spooled.take() {
                                    let _ = spooled.send(());
                                }
                            }
                        },
                    }
                };
                match outcome {
                    Ok(_) => {
                        spool.advance(length);
                        backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
                    }
                    Err(error) if error.is_stale_lease() => {
                        spool.remove();
                        return Ok(Upload::Fenced);
                    }
                    Err(error) if error.is_retryable() => {
                        tracing::debug!(%error, "log upload failed; retrying");
                        retry_at = Some(tokio::time::Instant::now() + backoff.next_delay());
                        break;
                    }
                    Err(error) => {
                        // A refused chunk (conflict) cannot succeed by retrying; skip it so the
                        // rest of the log still arrives, and say so.
                        tracing::error!(%error, seq = next.seq, "log chunk refused; skipping it");
                        spool.advance(length);
                    }
                }
            }
        }
        if !open && batch.is_empty() && retry_at.is_none() && spool.peek()?.is_none() {
            spool.remove();
            return Ok(Upload::Complete);
        }
        let wake = match (batch_started, retry_at) {
            (Some(started), Some(at)) => Some((started + BATCH_DELAY).min(at)),
            (Some(started), None) => Some(started + BATCH_DELAY),
            (None, at) => at,
        };
        tokio::select! {
            // A batch that is due is cut (and a retry that is due is sent) before more text
            // joins it; the loop's top does both.
            biased;
            _ = sleep_until_opt(wake) => {}
            text = receiver.recv(), if open => match text {
                Some(text) => {
                    push_split(&mut batch, &text, &mut spool)?;
                    // Only a batch with text in it starts the clock: an empty one is never cut,
                    // so its deadline would wake this loop over and over.
                    if batch_started.is_none() && !batch.is_empty() {
                        batch_started = Some(tokio::time::Instant::now());
                    }
                }
                None => open = false,
            },
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Uploads every batch of a spool left by an earlier run of the listener, in order. Batches
/// the server already stored are acknowledged again without being stored twice.
pub async fn replay(
    client: &Client,
    job_id: i64,
    attempt: u32,
    fence: &api::FencedRequest,
    spool_path: &Path,
) -> anyhow::Result<Upload> {
    let Ok(file) = std::fs::File::open(spool_path) else { return Ok(Upload::Complete) };
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    for line in BufReader::new(file).lines() {
        let Ok(batch) = serde_json::from_str::<SpooledBatch>(&line?) else {
            // A crash in the middle of an append leaves a torn last line: that batch was never
            // uploaded, and what follows it (nothing) cannot be trusted. Stop there.
            tracing::warn!(path = %spool_path.display(), "the log spool ends in a torn line; replaying up to it");
            break;
        };
        let request =
            api::LogUploadRequest { epoch: fence.epoch, token: fence.token.clone(), seq: batch.seq, data: batch.data };
        loop {
            match client.upload_log(job_id, attempt, &request).await {
                Ok(_) => break,
                Err(error) if error.is_stale_lease() => return Ok(Upload::Fenced),
                Err(error) if error.is_retryable() => tokio::time::sleep(backoff.next_delay()).await,
                Err(error) => {
                    tracing::error!(%error, seq = request.seq, "replayed log chunk refused; skipping it");
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_file(spool_path);
    Ok(Upload::Complete)
}

/// Adds `text` to the batch, spooling full batches; never splits a UTF-8 character.
fn push_split(batch: &mut String, text: &str, spool: &mut Spool) -> anyhow::Result<()> {
    let mut rest = text;
    while batch.len() + rest.len() > BATCH_BYTES_MAX {
        let room = BATCH_BYTES_MAX - batch.len();
        let mut cut = room.min(rest.len());
        while cut > 0 && !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        batch.push_str(&rest[..cut]);
        rest = &rest[cut..];
        spool.append(&std::mem::take(batch))?;
    }
    batch.push_str(rest);
    Ok(())
}

/// An append-only file of numbered batches; the reader keeps its place by byte offset.
struct Spool {
    path: PathBuf,
    file: std::fs::File,
    next_seq: u64,
    /// (sequence, byte offset) of the next batch to read.
    read_position: (u64, u64),
}

impl Spool {
    fn create(path: &Path) -> anyhow::Result<Spool> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path)?;
        Ok(Spool { path: path.to_path_buf(), file, next_seq: 1, read_position: (1, 0) })
    }

    fn append(&mut self, data: &str) -> anyhow::Result<()> {
        let line = serde_json::to_string(&SpooledBatch { seq: self.next_seq, data: data.to_string() })?;
        self.file.seek(SeekFrom::End(0))?;
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.next_seq += 1;
        Ok(())
    }

    /// The oldest batch not yet uploaded, with its length in the file; `None` when every
    /// spooled batch was uploaded.
    fn peek(&mut self) -> anyhow::Result<Option<(SpooledBatch, u64)>> {
        let (seq, offset) = self.read_position;
        if seq >= self.next_seq {
            return Ok(None);
        }
        self.file.seek(SeekFrom::Start(offset))?;
        let mut reader = BufReader::new(&self.file);
        let mut line = String::new();
        let read = reader.read_line(&mut line)?;
        anyhow::ensure!(read > 0, "log spool {} ends before batch {seq}", self.path.display());
        let batch: SpooledBatch = serde_json::from_str(line.trim_end())?;
        anyhow::ensure!(batch.seq == seq, "log spool out of order: found {} where {seq} belongs", batch.seq);
        Ok(Some((batch, read as u64)))
    }

    /// Moves past the batch [`Spool::peek`] returned, once the server stored it.
    fn advance(&mut self, length: u64) {
        self.read_position = (self.read_position.0 + 1, self.read_position.1 + length);
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
