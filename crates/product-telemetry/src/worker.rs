//! The background worker: the one thread that encodes, batches and delivers.
//!
//! It sleeps on the channel until an event arrives, a batch is due (`flush_at` events
//! or `flush_interval`), a retry is due, or a flush/shutdown request wakes it. Every
//! wait is bounded: requests get the smaller of the request timeout and the nearest
//! caller's deadline, retries wait on the channel (never in `sleep`), and the worker
//! gives up on a shutdown at its deadline. Memory is bounded: past `max_queue_bytes`
//! the oldest batches are dropped and counted.
//!
//! The worker never panics into the host: a panicking [`Transport`] counts as a
//! failed attempt.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use uuid::Uuid;

use crate::batch::{
    EncodedEvent, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES, encode_event, request_body,
};
use crate::client::{ClientBuilder, Envelope, Message, Shared, Waiter};
use crate::event::Properties;
use crate::retry::{Verdict, backoff, classify};
use crate::stats::Counters;
use crate::transport::{Transport, TransportError, TransportRequest, TransportResponse};

/// The longest the worker sleeps when it has nothing to do.
const IDLE_WAIT: Duration = Duration::from_secs(60);
/// A request needs at least this much time to be worth starting.
const MIN_ATTEMPT: Duration = Duration::from_millis(5);

/// Events sealed into one request.
#[derive(Debug)]
struct Batch {
    seq: u64,
    events: Vec<EncodedEvent>,
    uuids: Vec<Uuid>,
    bytes: usize,
    retries: u32,
    not_before: Instant,
}

/// A flush caller and the last batch it waits for.
#[derive(Debug)]
struct FlushWait {
    waiter: Waiter,
    up_to_seq: u64,
    failed_before: u64,
}

/// Settings the worker reads.
#[derive(Debug)]
struct Settings {
    api_key: String,
    url: String,
    flush_at: usize,
    flush_interval: Duration,
    max_queue_bytes: usize,
    max_retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    max_retry_after: Duration,
    request_timeout: Duration,
    gzip: bool,
    debug: bool,
    properties: Properties,
}

pub(crate) struct Worker {
    rx: Receiver<Envelope>,
    shared: Arc<Shared>,
    transport: Box<dyn Transport>,
    settings: Settings,
    buffer: Vec<EncodedEvent>,
    buffer_bytes: usize,
    buffer_since: Option<Instant>,
    outbox: VecDeque<Batch>,
    outbox_bytes: usize,
    next_seq: u64,
    flushes: Vec<FlushWait>,
    shutdown: Option<Waiter>,
    refused: bool,
    disconnected: bool,
}

impl Worker {
    pub(crate) fn new(
        builder: ClientBuilder,
        url: String,
        transport: Box<dyn Transport>,
        rx: Receiver<Envelope>,
        shared: Arc<Shared>,
    ) -> Self {
        let settings = Settings {
            api_key: builder.api_key,
            url,
            flush_at: builder.flush_at,
            flush_interval: builder.flush_interval,
            max_queue_bytes: builder.max_queue_bytes,
            max_retries: builder.max_retries,
            backoff_base: builder.backoff_base,
            backoff_max: builder.backoff_max,
            max_retry_after: builder.max_retry_after,
            request_timeout: builder.request_timeout,
            gzip: builder.gzip,
            debug: builder.debug,
            properties: builder.properties,
        };
        Worker {
            rx,
            shared,
            transport,
            settings,
            buffer: Vec::new(),
            buffer_bytes: 0,
            buffer_since: None,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            next_seq: 0,
            flushes: Vec::new(),
            shutdown: None,
            refused: false,
            disconnected: false,
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            let wait = self.next_wake().saturating_duration_since(Instant::now());
            if self.disconnected {
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            } else {
                match self.rx.recv_timeout(wait) {
                    Ok(envelope) => self.receive(envelope),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => self.on_disconnect(),
                }
            }
            self.take_control();
            self.seal_if_due();
            self.send_due();
            self.answer_flushes();
            if self.finish_if_done() {
                return;
            }
        }
    }

    fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    fn receive(&mut self, envelope: Envelope) {
        match envelope {
            Envelope::Event { message, size } => {
                self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                self.accept(message);
            }
            Envelope::Wake => self.shared.wake_pending.store(false, Ordering::Release),
        }
    }

    /// Takes everything already in the channel, without waiting.
    fn drain_channel(&mut self) {
        while let Ok(envelope) = self.rx.try_recv() {
            self.receive(envelope);
        }
    }

    fn on_disconnect(&mut self) {
        // Every `Client` is gone: deliver what is left within one request timeout.
        self.disconnected = true;
        if self.shutdown.is_none() {
            let (reply, _) = std::sync::mpsc::channel();
            let deadline = Instant::now() + self.settings.request_timeout;
            self.shutdown = Some(Waiter { deadline, reply });
        }
    }

    /// Encodes one event into the buffer, or drops it as invalid.
    fn accept(&mut self, message: Message) {
        match self.encode(message) {
            Ok(event) => {
                self.buffer_bytes += event.json.len();
                self.buffer.push(event);
                self.buffer_since.get_or_insert_with(Instant::now);
                self.enforce_memory_bound();
            }
            Err(reason) => {
                Counters::add(&self.counters().dropped_invalid, 1);
                log::debug!("telemetry: dropped an invalid event: {reason}");
            }
        }
    }

    fn encode(&self, message: Message) -> Result<EncodedEvent, String> {
        let name = message.event.name();
        if name.is_empty() {
            return Err("empty event name".into());
        }
        if message.distinct_id.is_empty() {
            return Err(format!("event {name:?} has an empty distinct id"));
        }
        let mut properties = message.event.properties().map_err(|e| e.to_string())?;
        for (key, value) in &self.settings.properties {
            if !properties.contains_key(key) {
                properties.insert(key.clone(), value.clone());
            }
        }
        let uuid = message
            .uuid
            .unwrap_or_else(|| uuid_v7_at(message.timestamp));
        let event = encode_event(
            name,
            &message.distinct_id,
            uuid,
            message.timestamp,
            &properties,
        )
        .map_err(|e| format!("event {name:?} could not be serialised: {e}"))?;
        if event.json.len() > MAX_EVENT_BYTES {
            return Err(format!(
                "event {name:?} is {} bytes, over the {MAX_EVENT_BYTES}-byte limit",
                event.json.len()
            ));
        }
        if self.settings.debug {
            eprintln!(
                "[product-telemetry] {}",
                String::from_utf8_lossy(&event.json)
            );
        }
        Ok(event)
    }

    /// Past the memory bound, the oldest sealed batches go first.
    fn enforce_memory_bound(&mut self) {
        if self.buffer_bytes + self.outbox_bytes <= self.settings.max_queue_bytes {
            return;
        }
        self.seal_all();
        while self.outbox_bytes > self.settings.max_queue_bytes && self.outbox.len() > 1 {
            if let Some(oldest) = self.outbox.pop_front() {
                self.outbox_bytes -= oldest.bytes;
                Counters::add(
                    &self.counters().dropped_queue_full,
                    oldest.events.len() as u64,
                );
            }
        }
    }

    fn take_control(&mut self) {
        let (flushes, shutdown) = {
            let mut control = self.shared.control();
            (
                std::mem::take(&mut control.flushes),
                control.shutdown.take(),
            )
        };
        if flushes.is_empty() && shutdown.is_none() {
            return;
        }
        // Everything captured before the request is in the channel: take it all.
        self.drain_channel();
        self.seal_all();
        let up_to_seq = self.next_seq;
        let failed_before = self.failed();
        self.flushes
            .extend(flushes.into_iter().map(|waiter| FlushWait {
                waiter,
                up_to_seq,
                failed_before,
            }));
        if shutdown.is_some() {
            self.shutdown = shutdown;
        }
    }

    fn failed(&self) -> u64 {
        let s = self.counters().snapshot();
        s.dropped_invalid + s.dropped_rejected + s.dropped_undeliverable + s.dropped_queue_full
    }

    fn seal_if_due(&mut self) {
        let interval_due = self
            .buffer_since
            .is_some_and(|since| since.elapsed() >= self.settings.flush_interval);
        if interval_due || self.buffer.len() >= self.settings.flush_at || self.shutdown.is_some() {
            self.seal_all();
        }
    }

    /// Cuts the buffer into batches of at most `flush_at` events and `MAX_REQUEST_BYTES`.
    fn seal_all(&mut self) {
        let now = Instant::now();
        let limit = self.settings.flush_at.min(MAX_BATCH_EVENTS);
        let mut events = std::mem::take(&mut self.buffer).into_iter().peekable();
        self.buffer_bytes = 0;
        self.buffer_since = None;
        while events.peek().is_some() {
            let mut batch = Batch {
                seq: self.next_seq,
                events: Vec::new(),
                uuids: Vec::new(),
                bytes: 0,
                retries: 0,
                not_before: now,
            };
            while let Some(event) = events.next_if(|e| {
                batch.events.len() < limit
                    && (batch.events.is_empty() || batch.bytes + e.json.len() < MAX_REQUEST_BYTES)
            }) {
                batch.bytes += event.json.len();
                batch.uuids.push(event.uuid);
                batch.events.push(event);
            }
            self.next_seq += 1;
            self.outbox_bytes += batch.bytes;
            self.outbox.push_back(batch);
        }
    }

    /// The time left for one request: the request timeout, shortened by the nearest
    /// deadline of a caller waiting on this work. `None` when it is too short.
    fn attempt_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let deadlines = self
            .flushes
            .iter()
            .map(|f| f.waiter.deadline)
            .chain(self.shutdown.as_ref().map(|s| s.deadline));
        let timeout = deadlines
            .map(|d| d.saturating_duration_since(now))
            .fold(self.settings.request_timeout, Duration::min);
        (timeout >= MIN_ATTEMPT).then_some(timeout)
    }

    fn send_due(&mut self) {
        loop {
            self.take_control();
            let now = Instant::now();
            let Some(front) = self.outbox.front() else {
                return;
            };
            if front.not_before > now {
                return;
            }
            if self.refused {
                self.drop_outbox(|c| &c.dropped_rejected);
                return;
            }
            let Some(timeout) = self.attempt_timeout() else {
                return;
            };
            let Some(batch) = self.outbox.pop_front() else {
                return;
            };
            self.outbox_bytes -= batch.bytes;
            self.attempt(batch, timeout);
        }
    }

    fn attempt(&mut self, mut batch: Batch, timeout: Duration) {
        let body = request_body(&self.settings.api_key, &batch.events, self.settings.gzip);
        let request = TransportRequest {
            url: &self.settings.url,
            body: &body,
            gzip: self.settings.gzip,
            timeout,
            uuids: &batch.uuids,
            attempt: batch.retries,
        };
        Counters::add(&self.counters().requests, 1);
        if batch.retries > 0 {
            Counters::add(&self.counters().retries, 1);
        }
        let transport = &mut self.transport;
        let result: Result<TransportResponse, TransportError> =
            catch_unwind(AssertUnwindSafe(|| transport.send(&request)))
                .unwrap_or_else(|_| Err(TransportError("the transport panicked".into())));
        let count = batch.events.len() as u64;
        let verdict = match &result {
            Ok(response) => classify(
                response.status,
                response.retry_after.as_deref(),
                self.settings.max_retry_after,
            ),
            Err(error) => {
                log::debug!("telemetry: delivery failed: {error}");
                Verdict::Retry { at_least: None }
            }
        };
        match verdict {
            Verdict::Delivered => Counters::add(&self.counters().sent, count),
            Verdict::Retry { at_least } if batch.retries < self.settings.max_retries => {
                batch.retries += 1;
                let delay = backoff(
                    batch.retries,
                    self.settings.backoff_base,
                    self.settings.backoff_max,
                )
                .max(at_least.unwrap_or_default());
                batch.not_before = Instant::now() + delay;
                self.requeue_front(batch);
            }
            Verdict::Retry { .. } => {
                log::debug!(
                    "telemetry: dropped {count} event(s) after {} retries",
                    batch.retries
                );
                Counters::add(&self.counters().dropped_undeliverable, count);
            }
            Verdict::TooLarge if batch.events.len() > 1 => {
                let half = batch.events.len() / 2;
                let second = self.split_off(&mut batch, half);
                self.requeue_front(second);
                self.requeue_front(batch);
            }
            Verdict::TooLarge => {
                log::debug!("telemetry: the server refused an event as too large (413)");
                Counters::add(&self.counters().dropped_rejected, count);
            }
            Verdict::Unauthorized(status) => {
                log::debug!(
                    "telemetry: the project API key was refused ({status}); not sending for the rest of this run"
                );
                self.refused = true;
                Counters::add(&self.counters().dropped_rejected, count);
            }
            Verdict::Rejected(status) => {
                log::debug!(
                    "telemetry: the server rejected a batch of {count} event(s) ({status})"
                );
                Counters::add(&self.counters().dropped_rejected, count);
            }
        }
    }

    fn split_off(&mut self, batch: &mut Batch, at: usize) -> Batch {
        let events = batch.events.split_off(at);
        let uuids = batch.uuids.split_off(at);
        let bytes: usize = events.iter().map(|e| e.json.len()).sum();
        batch.bytes -= bytes;
        Batch {
            seq: batch.seq,
            events,
            uuids,
            bytes,
            retries: batch.retries,
            not_before: batch.not_before,
        }
    }

    fn requeue_front(&mut self, batch: Batch) {
        self.outbox_bytes += batch.bytes;
        self.outbox.push_front(batch);
    }

    fn drop_outbox(&mut self, counter: impl Fn(&Counters) -> &std::sync::atomic::AtomicU64) {
        let dropped: usize = self.outbox.drain(..).map(|b| b.events.len()).sum();
        self.outbox_bytes = 0;
        Counters::add(counter(&self.shared.counters), dropped as u64);
    }

    /// Answers flush callers whose batches are all resolved, or can't be before their
    /// deadline; forgets those whose deadline passed.
    fn answer_flushes(&mut self) {
        let now = Instant::now();
        let failed_now = self.failed();
        let outbox = &self.outbox;
        let refused = self.refused;
        self.flushes.retain(|flush| {
            if flush.waiter.deadline <= now {
                return false;
            }
            let mine = || outbox.iter().filter(|b| b.seq < flush.up_to_seq);
            let waiting: u64 = mine().map(|b| b.events.len() as u64).sum();
            let hopeless = refused || mine().all(|b| b.not_before > flush.waiter.deadline);
            if waiting == 0 || hopeless {
                let failed = failed_now.saturating_sub(flush.failed_before);
                let _ = flush.waiter.reply.send(waiting + failed);
                return false;
            }
            true
        });
    }

    /// Ends the worker when a shutdown has nothing left to do or its time is up.
    fn finish_if_done(&mut self) -> bool {
        let Some(shutdown) = &self.shutdown else {
            return false;
        };
        let now = Instant::now();
        let out_of_time = shutdown.deadline.saturating_duration_since(now) < MIN_ATTEMPT
            || self.outbox.iter().all(|b| b.not_before > shutdown.deadline);
        if !self.outbox.is_empty() && !out_of_time && !self.refused {
            return false;
        }
        self.drain_channel();
        self.seal_all();
        let left: u64 = self.outbox.iter().map(|b| b.events.len() as u64).sum();
        if left > 0 {
            log::debug!("telemetry: {left} event(s) not delivered before shutdown");
        }
        self.drop_outbox(|c| &c.dropped_at_shutdown);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.reply.send(left);
        }
        for flush in self.flushes.drain(..) {
            let _ = flush.waiter.reply.send(left);
        }
        true
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let interval = self
            .buffer_since
            .map(|since| since + self.settings.flush_interval);
        let retry = self.outbox.front().map(|b| b.not_before);
        let deadlines = self
            .flushes
            .iter()
            .map(|f| f.waiter.deadline)
            .chain(self.shutdown.as_ref().map(|s| s.deadline));
        [interval, retry]
            .into_iter()
            .flatten()
            .chain(deadlines)
            .fold(now + IDLE_WAIT, Instant::min)
    }
}

/// A UUID v7 whose time part is the capture time.
fn uuid_v7_at(time: std::time::SystemTime) -> Uuid {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        since_epoch.as_secs(),
        since_epoch.subsec_nanos(),
    );
    Uuid::new_v7(ts)
}
