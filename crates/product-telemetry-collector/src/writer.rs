//! The writer thread: the one place that owns the writing SQLite connection.
//!
//! Request handlers hand over a validated request through a bounded channel and await its
//! result; the thread takes whatever requests are waiting (up to a bound), writes them in one
//! transaction with a savepoint each, commits, and only then answers each handler. So a
//! request is acknowledged only once its events are committed, SQLite work never runs on the
//! async runtime, and a busy collector pays for one commit per group rather than per request.
//!
//! Beside it runs a checkpointer thread with its own connection, copying the WAL into the
//! database file every [`CHECKPOINT_INTERVAL`] so the checkpoint's fsyncs never sit inside
//! the writer's commits.
//!
//! When every sender is gone the writer drains what is queued, stops the checkpointer, closes
//! its connection (which checkpoints the rest of the WAL) and ends.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::store::{CheckpointConnection, IngestBatch, StoreError, WriteConnection};

/// Requests waiting for the writer; a full queue makes handlers wait (backpressure). The
/// server's request slots bound it further.
const QUEUE_DEPTH: usize = 64;
/// Most requests written in one transaction.
const MAX_GROUP: usize = 64;
/// How often the checkpointer copies the WAL into the database file.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

struct Job {
    batch: IngestBatch,
    /// The result, and the batch handed back so that its memory is freed on the handler's
    /// thread rather than on the writer's (the writer is the bottleneck).
    done: oneshot::Sender<(Result<usize, StoreError>, IngestBatch)>,
}

/// The sending side, cloned into every request handler.
#[derive(Debug, Clone)]
pub(crate) struct WriterSender {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("events", &self.batch.len())
            .finish()
    }
}

impl WriterSender {
    /// Queues a request and waits until it is committed (or failed). Returns how many of its
    /// events were new.
    pub(crate) async fn write(&self, batch: IngestBatch) -> Result<usize, StoreError> {
        let (done, result) = oneshot::channel();
        self.tx
            .send(Job { batch, done })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        match result.await {
            Ok((result, _batch)) => result,
            Err(_) => Err(StoreError::WriterStopped),
        }
    }
}

/// The writer thread, to be joined at shutdown.
#[derive(Debug)]
pub(crate) struct WriterThread {
    handle: JoinHandle<()>,
    finished: std::sync::mpsc::Receiver<()>,
}

impl WriterThread {
    /// Waits for the thread to drain its queue and end, at most until `deadline`. Returns
    /// false if it is still running then (it is left to finish on its own).
    pub(crate) fn join_until(self, deadline: Instant) -> bool {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self
            .finished
            .recv_timeout(wait.max(Duration::from_millis(1)))
        {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                self.handle.join().is_ok()
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
        }
    }
}

/// Starts the writer thread (and its checkpointer) on an open connection.
pub(crate) fn spawn(
    conn: WriteConnection,
    checkpointer: CheckpointConnection,
) -> Result<(WriterSender, WriterThread), std::io::Error> {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let (finished_tx, finished) = std::sync::mpsc::sync_channel(1);
    let (stop_checkpoints, checkpoint_stop) = std::sync::mpsc::sync_channel::<()>(1);
    let checkpoints = std::thread::Builder::new()
        .name("collector-checkpoint".into())
        .spawn(move || run_checkpoints(&checkpointer, &checkpoint_stop))?;
    let handle = std::thread::Builder::new()
        .name("collector-writer".into())
        .spawn(move || {
            run(conn, rx, stop_checkpoints, checkpoints);
            // The receiver may be gone; nothing to do about it.
            let _ = finished_tx.send(());
        })?;
    Ok((WriterSender { tx }, WriterThread { handle, finished }))
}

fn run_checkpoints(conn: &CheckpointConnection, stop: &std::sync::mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(CHECKPOINT_INTERVAL) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = conn.checkpoint() {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                }
            }
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn run(
    mut conn: WriteConnection,
    mut rx: mpsc::Receiver<Job>,
    stop_checkpoints: std::sync::mpsc::SyncSender<()>,
    checkpoints: JoinHandle<()>,
) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let batches: Vec<&IngestBatch> = group.iter().map(|j| &j.batch).collect();
        let results = conn.write_all(&batches);
        for (job, result) in group.drain(..).zip(results) {
            if let Err(e) = &result {
                tracing::error!(error = %e, "storing a request failed");
            }
            // A handler that gave up (client gone) no longer listens; its events are stored
            // anyway and a retry is deduplicated.
            let _ = job.done.send((result, job.batch));
        }
    }
    tracing::debug!("writer queue closed; closing the database");
    // Stop the checkpointer first (it finishes at most one checkpoint), so that closing the
    // writer — the last connection — checkpoints the rest and removes the WAL.
    drop(stop_checkpoints);
    if checkpoints.join().is_err() {
        tracing::warn!("the checkpoint thread panicked");
    }
    drop(conn);
}
