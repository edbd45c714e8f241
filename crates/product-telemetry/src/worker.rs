//! The background worker: the one thread that encodes, spools, batches and delivers.
//!
//! It parks until a batch is due (`flush_at` events or `flush_interval`), a retry is
//! due, or a flush/shutdown request or the first event after a pause unparks it; while
//! events flow it polls the channel every few milliseconds, so capturing threads never
//! pay for waking it. Events
//! it receives are encoded and — when a spool is configured — written to disk at once
//! as a segment (write-ahead), so a crash loses at most what was still in the channel.
//! Segments are grouped into requests; a segment's file is deleted only when the server
//! has acknowledged it (or refused it for good).
//!
//! Every wait is bounded: requests get the smaller of the request timeout and the
//! nearest caller's deadline, retries wait in `park_timeout` (which a request cuts
//! short), and a
//! shutdown ends at its deadline with whatever is undelivered left in the spool.
//! Memory is bounded: past `max_queue_bytes`, spooled segments are dropped from memory
//! (read back when sent) and memory-only ones are dropped, oldest first, and counted.
//!
//! The worker never panics into the host: a panicking [`Transport`] counts as a
//! failed attempt.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::Environment;
use crate::batch::{
    EncodedEvent, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES, Merged, encode_event,
    request_body,
};
use crate::client::{ClientBuilder, Message, Queued, Shared, Waiter};
use crate::event::Properties;
use crate::retry::{Verdict, backoff, classify};
use crate::scrub::Scrubber;
use crate::spool::Spool;
use crate::stats::Counters;
use crate::transport::{Transport, TransportError, TransportRequest, TransportResponse};

/// The longest the worker sleeps when it has nothing to do.
const IDLE_WAIT: Duration = Duration::from_secs(60);
/// A request needs at least this much time to be worth starting.
const MIN_ATTEMPT: Duration = Duration::from_millis(5);
/// Time reserved at the end of a shutdown to finish before the caller's deadline.
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(20);
/// How often an active worker looks at the channel.
const ACTIVE_POLL: Duration = Duration::from_millis(5);
/// Events taken from the channel per wake-up before spooling them as one segment.
const DRAIN_PER_WAKE: usize = 1_000;
/// How often an idle worker looks for segments left by processes that are gone.
const RESCAN_EVERY: Duration = Duration::from_secs(5);

/// Events written (or to be written) together: one spool file, or memory only.
#[derive(Debug)]
struct Segment {
    path: Option<PathBuf>,
    /// `None` once dropped from memory; read back from `path` when sent.
    events: Option<Vec<EncodedEvent>>,
    count: usize,
    bytes: usize,
}

impl Segment {
    fn in_memory(&self) -> usize {
        if self.events.is_some() { self.bytes } else { 0 }
    }
}

/// Segments sent together in one request.
#[derive(Debug)]
struct Batch {
    seq: u64,
    segments: Vec<Segment>,
    retries: u32,
    not_before: Instant,
}

impl Batch {
    fn count(&self) -> usize {
        self.segments.iter().map(|s| s.count).sum()
    }
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
    spool_dir: Option<PathBuf>,
    spool_max_bytes: u64,
    spool_max_age: Duration,
    honour_remembered_backoff: bool,
    forced: Properties,
    scrubber: Option<Scrubber>,
    trusted: Vec<String>,
    dry_run: bool,
    sent_log: Option<PathBuf>,
    common_properties: Option<Environment>,
}

pub(crate) struct Worker {
    rx: Receiver<Queued>,
    shared: Arc<Shared>,
    transport: Box<dyn Transport>,
    settings: Settings,
    spool: Option<Spool>,
    /// Encoded, not yet in a segment.
    pending: Vec<EncodedEvent>,
    /// Segments not yet sealed into a batch.
    buffer: Vec<Segment>,
    buffer_since: Option<Instant>,
    outbox: VecDeque<Batch>,
    /// Bytes of encoded events held in memory (pending, buffer and outbox).
    memory: usize,
    next_seq: u64,
    flushes: Vec<FlushWait>,
    shutdown: Option<Waiter>,
    refused: bool,
    disconnected: bool,
    /// No request before this (a backoff, possibly remembered from an earlier run).
    blocked_until: Option<Instant>,
    spooled_since_bounds: u64,
    last_rescan: Instant,
}

impl Worker {
    pub(crate) fn new(
        builder: ClientBuilder,
        url: String,
        transport: Box<dyn Transport>,
        rx: Receiver<Queued>,
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
            spool_dir: builder.spool_dir,
            spool_max_bytes: builder.spool_max_bytes,
            spool_max_age: builder.spool_max_age,
            honour_remembered_backoff: builder.honour_remembered_backoff,
            forced: builder.forced,
            scrubber: builder.scrubber,
            trusted: builder.trusted,
            dry_run: builder.dry_run,
            sent_log: builder.sent_log,
            common_properties: builder.common_properties,
        };
        Worker {
            rx,
            shared,
            transport,
            settings,
            spool: None,
            pending: Vec::new(),
            buffer: Vec::new(),
            buffer_since: None,
            outbox: VecDeque::new(),
            memory: 0,
            next_seq: 0,
            flushes: Vec::new(),
            shutdown: None,
            refused: false,
            disconnected: false,
            blocked_until: None,
            spooled_since_bounds: 0,
            last_rescan: Instant::now(),
        }
    }

    pub(crate) fn run(mut self) {
        if let Some(env) = self.settings.common_properties.take() {
            for (key, value) in crate::common::properties(&env) {
                self.settings.properties.entry(key).or_insert(value);
            }
        }
        self.open_spool();
        let mut active = false;
        loop {
            let wait = self.next_wake().saturating_duration_since(Instant::now());
            if self.disconnected {
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            } else {
                self.park(wait, active);
                active = self.drain_channel(DRAIN_PER_WAKE) > 0;
            }
            self.take_control();
            self.journal();
            self.seal_if_due();
            self.send_due();
            self.answer_flushes();
            self.rescan_if_idle();
            if self.finish_if_done() {
                return;
            }
        }
    }

    fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64, n: usize) {
        Counters::add(counter(&self.shared.counters), n as u64);
    }

    // ---- the spool -------------------------------------------------------------

    /// Opens the spool and takes over what earlier runs left. Runs on the worker
    /// thread: initialisation on the caller's thread does no spool I/O.
    fn open_spool(&mut self) {
        let Some(dir) = self.settings.spool_dir.clone() else {
            return;
        };
        match Spool::open(
            &dir,
            self.settings.spool_max_bytes,
            self.settings.spool_max_age,
        ) {
            Ok(spool) => self.spool = Some(spool),
            Err(e) => {
                log::debug!(
                    "telemetry: no spool at {} ({e}); undelivered events are kept in memory only",
                    dir.display()
                );
                return;
            }
        }
        let remembered = self.spool.as_ref().and_then(Spool::next_attempt);
        if let Some(at) = remembered.filter(|_| self.settings.honour_remembered_backoff) {
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            self.blocked_until = Some(Instant::now() + wait);
        }
        self.enforce_spool_bounds();
        self.claim_orphans();
    }

    fn claim_orphans(&mut self) {
        self.last_rescan = Instant::now();
        let Some(spool) = &self.spool else { return };
        let claimed = spool.claim_orphans();
        spool.record_dropped(0, claimed.corrupt);
        self.count(|c| &c.spool_corrupt, claimed.corrupt as usize);
        if claimed.segments.is_empty() {
            return;
        }
        let segments: Vec<Segment> = claimed
            .segments
            .into_iter()
            .map(|loaded| {
                let bytes = loaded.events.iter().map(|e| e.json.len()).sum();
                Segment {
                    path: Some(loaded.path),
                    count: loaded.events.len(),
                    events: Some(loaded.events),
                    bytes,
                }
            })
            .collect();
        let recovered: usize = segments.iter().map(|s| s.count).sum();
        log::debug!("telemetry: {recovered} event(s) recovered from the spool");
        self.count(|c| &c.recovered, recovered);
        self.memory += segments.iter().map(Segment::in_memory).sum::<usize>();
        // Older than anything captured in this run: they go first.
        let batches = self.group(segments);
        for batch in batches.into_iter().rev() {
            self.outbox.push_front(batch);
        }
        self.enforce_memory_bound();
    }

    /// Whether an idle rescan of the spool can happen (wakes are planned only for it).
    fn rescan_possible(&self) -> bool {
        self.spool.is_some() && !self.refused && self.outbox.is_empty()
    }

    fn rescan_if_idle(&mut self) {
        if self.rescan_possible() && self.last_rescan.elapsed() >= RESCAN_EVERY {
            self.claim_orphans();
        }
    }

    /// Writes the pending events as segments (of at most one batch each).
    fn journal(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let limit = self.settings.flush_at.min(MAX_BATCH_EVENTS);
        let mut events = pending.into_iter().peekable();
        while events.peek().is_some() {
            let chunk: Vec<EncodedEvent> = events.by_ref().take(limit).collect();
            let segment = self.make_segment(chunk);
            self.buffer.push(segment);
        }
        self.buffer_since.get_or_insert_with(Instant::now);
        if let Some(spool) = &self.spool
            && self.spooled_since_bounds > spool.max_bytes / 8
        {
            self.enforce_spool_bounds();
        }
        self.enforce_memory_bound();
    }

    /// Makes a segment of already-counted in-memory events, writing it to the spool
    /// when there is one.
    fn make_segment(&mut self, events: Vec<EncodedEvent>) -> Segment {
        let bytes = events.iter().map(|e| e.json.len()).sum();
        let path = self
            .spool
            .as_ref()
            .and_then(|spool| match spool.write(&events) {
                Ok(path) => Some(path),
                Err(e) => {
                    log::debug!(
                        "telemetry: cannot write to the spool ({e}); keeping events in memory"
                    );
                    None
                }
            });
        if path.is_some() {
            self.count(|c| &c.spooled, events.len());
            self.spooled_since_bounds += bytes as u64;
        }
        Segment {
            path,
            count: events.len(),
            events: Some(events),
            bytes,
        }
    }

    /// Applies the spool's size and age bounds; forgets our segments it evicted.
    fn enforce_spool_bounds(&mut self) {
        self.spooled_since_bounds = 0;
        let Some(spool) = &self.spool else { return };
        let (removed, events) = spool.enforce_bounds();
        if removed.is_empty() {
            return;
        }
        log::debug!("telemetry: the spool is full; {events} oldest event(s) evicted");
        spool.record_dropped(events, 0);
        self.count(|c| &c.dropped_evicted, events as usize);
        let gone = |s: &Segment| s.path.as_ref().is_some_and(|p| removed.contains(p));
        let mut freed = 0;
        self.buffer.retain(|s| {
            let keep = !gone(s);
            if !keep {
                freed += s.in_memory();
            }
            keep
        });
        for batch in &mut self.outbox {
            batch.segments.retain(|s| {
                let keep = !gone(s);
                if !keep {
                    freed += s.in_memory();
                }
                keep
            });
        }
        self.outbox.retain(|b| !b.segments.is_empty());
        self.memory -= freed;
    }

    // ---- receiving ---------------------------------------------------------------

    /// Waits for work. While events keep coming the worker polls (capturing threads
    /// then never pay for waking it); once a round brings none, it says it is asleep
    /// and parks until the next deadline, an event or a control request wakes it.
    fn park(&mut self, wait: Duration, active: bool) {
        if active {
            std::thread::park_timeout(wait.min(ACTIVE_POLL));
            return;
        }
        self.shared.sleeping.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        // An event sent before the flag was visible is seen here instead.
        if self.drain_channel(DRAIN_PER_WAKE) == 0 && !self.disconnected {
            std::thread::park_timeout(wait);
        }
        self.shared.sleeping.store(false, Ordering::SeqCst);
    }

    /// Takes up to `limit` events already in the channel, without waiting, and
    /// releases their bytes from the queue's budget in one step (one write to a line
    /// the capturing threads also write, not one per event). Returns how many it took.
    fn drain_channel(&mut self, limit: usize) -> usize {
        let mut released = 0;
        let mut taken = 0;
        while taken < limit {
            match self.rx.try_recv() {
                Ok(Queued { message, size }) => {
                    self.accept(message);
                    released += size;
                    taken += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.on_disconnect();
                    break;
                }
            }
        }
        if released > 0 {
            self.shared
                .queued_bytes
                .fetch_sub(released, Ordering::Relaxed);
        }
        taken
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

    /// Encodes one event into `pending`, or drops it as invalid.
    fn accept(&mut self, message: Message) {
        match self.encode(message) {
            Ok(event) => {
                self.memory += event.json.len();
                self.pending.push(event);
            }
            Err(reason) => {
                self.count(|c| &c.dropped_invalid, 1);
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
        let name = name.to_string();
        let mut properties = message.event.into_properties().map_err(|e| e.to_string())?;
        if let Some(scrubber) = &self.settings.scrubber {
            scrubber.scrub_properties(&mut properties, &self.settings.trusted);
        }
        let uuid = message
            .uuid
            .unwrap_or_else(|| uuid_v7_at(message.timestamp));
        let event = encode_event(
            &name,
            &message.distinct_id,
            uuid,
            message.timestamp,
            Merged {
                forced: &self.settings.forced,
                own: &properties,
                defaults: &self.settings.properties,
            },
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

    /// Past the memory bound: spooled segments leave memory (they are read back when
    /// sent); then memory-only segments are dropped, oldest first.
    fn enforce_memory_bound(&mut self) {
        let max = self.settings.max_queue_bytes;
        if self.memory <= max {
            return;
        }
        let mut memory = self.memory;
        let segments = self
            .outbox
            .iter_mut()
            .flat_map(|b| b.segments.iter_mut())
            .chain(self.buffer.iter_mut());
        for segment in segments {
            if memory <= max {
                break;
            }
            if segment.path.is_some() && segment.events.is_some() {
                segment.events = None;
                memory -= segment.bytes;
            }
        }
        self.memory = memory;
        if self.memory <= max {
            return;
        }
        self.seal_all();
        while self.memory > max {
            let Some(index) = self
                .outbox
                .iter()
                .position(|b| b.segments.iter().any(|s| s.path.is_none()))
            else {
                break;
            };
            let batch = &mut self.outbox[index];
            let Some(at) = batch.segments.iter().position(|s| s.path.is_none()) else {
                break;
            };
            let segment = batch.segments.remove(at);
            if batch.segments.is_empty() {
                self.outbox.remove(index);
            }
            self.memory -= segment.in_memory();
            self.count(|c| &c.dropped_queue_full, segment.count);
        }
    }

    // ---- control -----------------------------------------------------------------

    fn take_control(&mut self) {
        let (flushes, persists, shutdown) = {
            let mut control = self.shared.control();
            (
                std::mem::take(&mut control.flushes),
                std::mem::take(&mut control.persists),
                control.shutdown.take(),
            )
        };
        if flushes.is_empty() && persists.is_empty() && shutdown.is_none() {
            return;
        }
        // Everything captured before the request is in the channel: take it all.
        self.drain_channel(usize::MAX);
        self.journal();
        let memory_only = self.memory_only_events();
        for waiter in persists {
            let _ = waiter.reply.send(memory_only);
        }
        if flushes.is_empty() && shutdown.is_none() {
            return;
        }
        self.seal_all();
        let up_to_seq = self.next_seq;
        let failed_before = self.failed();
        self.flushes
            .extend(flushes.into_iter().map(|waiter| FlushWait {
                waiter,
                up_to_seq,
                failed_before,
            }));
        if let Some(mut shutdown) = shutdown {
            // Keep time to wrap up (spool, release, reply) before the caller gives up.
            let left = shutdown.deadline.saturating_duration_since(Instant::now());
            shutdown.deadline -= SHUTDOWN_MARGIN.min(left / 4);
            self.shutdown = Some(shutdown);
        }
    }

    /// Undelivered events that exist in memory only.
    fn memory_only_events(&self) -> u64 {
        let segments = self
            .buffer
            .iter()
            .chain(self.outbox.iter().flat_map(|b| b.segments.iter()));
        segments
            .filter(|s| s.path.is_none())
            .map(|s| s.count as u64)
            .sum()
    }

    fn failed(&self) -> u64 {
        let s = self.counters().snapshot();
        s.dropped_invalid + s.dropped_rejected + s.dropped_undeliverable + s.dropped_queue_full
    }

    // ---- batching ----------------------------------------------------------------

    fn seal_if_due(&mut self) {
        let interval_due = self
            .buffer_since
            .is_some_and(|since| since.elapsed() >= self.settings.flush_interval);
        let buffered: usize = self.buffer.iter().map(|s| s.count).sum();
        if interval_due || buffered >= self.settings.flush_at || self.shutdown.is_some() {
            self.seal_all();
        }
    }

    /// Moves every buffered segment into batches in the outbox.
    fn seal_all(&mut self) {
        self.buffer_since = None;
        let segments = std::mem::take(&mut self.buffer);
        let batches = self.group(segments);
        self.outbox.extend(batches);
    }

    /// Groups segments into batches of at most `flush_at` events and
    /// `MAX_REQUEST_BYTES`; a segment is never split.
    fn group(&mut self, segments: Vec<Segment>) -> Vec<Batch> {
        let limit = self.settings.flush_at.min(MAX_BATCH_EVENTS);
        let not_before = self.blocked_until.unwrap_or_else(Instant::now);
        let mut batches: Vec<Batch> = Vec::new();
        let mut seq = self.next_seq;
        for segment in segments {
            let fits = batches.last().is_some_and(|b| {
                b.count() + segment.count <= limit
                    && b.segments.iter().map(|s| s.bytes).sum::<usize>() + segment.bytes
                        < MAX_REQUEST_BYTES
            });
            match batches.last_mut() {
                Some(batch) if fits => batch.segments.push(segment),
                _ => {
                    batches.push(Batch {
                        seq,
                        segments: vec![segment],
                        retries: 0,
                        not_before,
                    });
                    seq += 1;
                }
            }
        }
        self.next_seq = seq;
        batches
    }

    // ---- sending -----------------------------------------------------------------

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
                while let Some(batch) = self.outbox.pop_front() {
                    self.discard(batch, |c| &c.dropped_rejected);
                }
                return;
            }
            let Some(timeout) = self.attempt_timeout() else {
                return;
            };
            let Some(batch) = self.outbox.pop_front() else {
                return;
            };
            self.attempt(batch, timeout);
        }
    }

    /// The batch's events, read back from the spool where they left memory. Segments
    /// that can no longer be read are dropped and counted.
    fn load(&mut self, batch: &mut Batch) -> Vec<EncodedEvent> {
        let mut events = Vec::with_capacity(batch.count());
        let mut lost = 0;
        batch.segments.retain(|segment| {
            if let Some(own) = &segment.events {
                events.extend(own.iter().cloned());
                return true;
            }
            let read = match (&self.spool, &segment.path) {
                (Some(spool), Some(path)) => spool.read(path),
                _ => Err(std::io::Error::other("no spool")),
            };
            match read {
                Ok(read) => {
                    events.extend(read);
                    true
                }
                Err(e) => {
                    log::debug!("telemetry: a spooled segment could not be read back: {e}");
                    lost += segment.count;
                    false
                }
            }
        });
        self.count(|c| &c.spool_corrupt, usize::from(lost > 0));
        self.count(|c| &c.dropped_evicted, lost);
        events
    }

    fn attempt(&mut self, mut batch: Batch, timeout: Duration) {
        let events = self.load(&mut batch);
        if events.is_empty() {
            return;
        }
        if self.settings.dry_run {
            let body = request_body(&self.settings.api_key, &events, false);
            eprintln!(
                "[product-telemetry dry run] POST {} (not sent)\n{}",
                self.settings.url,
                String::from_utf8_lossy(&body)
            );
            let count = self.release(batch);
            self.count(|c| &c.sent, count);
            return;
        }
        let uuids: Vec<Uuid> = events.iter().map(|e| e.uuid).collect();
        let body = request_body(&self.settings.api_key, &events, self.settings.gzip);
        let request = TransportRequest {
            url: &self.settings.url,
            body: &body,
            gzip: self.settings.gzip,
            timeout,
            uuids: &uuids,
            attempt: batch.retries,
        };
        self.count(|c| &c.requests, 1);
        if batch.retries > 0 {
            self.count(|c| &c.retries, 1);
        }
        let transport = &mut self.transport;
        let started = Instant::now();
        let result: Result<TransportResponse, TransportError> =
            catch_unwind(AssertUnwindSafe(|| transport.send(&request)))
                .unwrap_or_else(|_| Err(TransportError("the transport panicked".into())));
        // An attempt cut short by a waiting caller's deadline says nothing about the
        // endpoint: no retry is counted and no backoff is remembered.
        let cut_by_caller = result.is_err()
            && timeout < self.settings.request_timeout
            && started.elapsed() >= timeout.mul_f64(0.8);
        if cut_by_caller {
            self.outbox.push_front(batch);
            return;
        }
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
        let count = batch.count();
        match verdict {
            Verdict::Delivered => {
                if let Some(path) = &self.settings.sent_log {
                    crate::sent_log::append(path, events.iter().map(|e| e.json.as_slice()));
                }
                self.release(batch);
                self.count(|c| &c.sent, count);
                if self.blocked_until.take().is_some()
                    && let Some(spool) = &self.spool
                {
                    spool.set_next_attempt(None);
                }
            }
            Verdict::Retry { at_least } => self.retry_later(batch, at_least),
            Verdict::TooLarge if count > 1 => self.split(batch),
            Verdict::TooLarge => {
                log::debug!("telemetry: the server refused an event as too large (413)");
                self.discard(batch, |c| &c.dropped_rejected);
            }
            Verdict::Unauthorized(status) => {
                log::debug!(
                    "telemetry: the project API key was refused ({status}); not sending for the rest of this run"
                );
                self.refused = true;
                self.discard(batch, |c| &c.dropped_rejected);
            }
            Verdict::Rejected(status) => {
                log::debug!(
                    "telemetry: the server rejected a batch of {count} event(s) ({status})"
                );
                self.discard(batch, |c| &c.dropped_rejected);
            }
        }
    }

    /// Schedules a retry with backoff. Without a spool, a batch is dropped after
    /// `max_retries`; with one, it stays on disk and is retried at the longest backoff
    /// (and by later runs) until the spool's age bound.
    fn retry_later(&mut self, mut batch: Batch, at_least: Option<Duration>) {
        if batch.retries >= self.settings.max_retries && self.spool.is_none() {
            log::debug!(
                "telemetry: dropped {} event(s) after {} retries",
                batch.count(),
                batch.retries
            );
            self.discard(batch, |c| &c.dropped_undeliverable);
            return;
        }
        batch.retries += 1;
        let delay = backoff(
            batch.retries,
            self.settings.backoff_base,
            self.settings.backoff_max,
        )
        .max(at_least.unwrap_or_default());
        let now = Instant::now();
        batch.not_before = now + delay;
        self.blocked_until = Some(batch.not_before);
        if let Some(spool) = &self.spool {
            spool.set_next_attempt(Some(SystemTime::now() + delay));
        }
        self.outbox.push_front(batch);
    }

    /// 413: sends the two halves separately. A batch of one segment is split by
    /// rewriting that segment as two.
    fn split(&mut self, mut batch: Batch) {
        if batch.segments.len() == 1 {
            let mut first = self.load(&mut batch);
            let old = Batch {
                segments: std::mem::take(&mut batch.segments),
                ..batch
            };
            self.release(old);
            let second = first.split_off(first.len() / 2);
            self.memory += first
                .iter()
                .chain(&second)
                .map(|e| e.json.len())
                .sum::<usize>();
            batch.segments = vec![self.make_segment(first), self.make_segment(second)];
        }
        let second = Batch {
            seq: batch.seq,
            segments: batch.segments.split_off(batch.segments.len() / 2),
            retries: batch.retries,
            not_before: Instant::now(),
        };
        batch.not_before = Instant::now();
        self.outbox.push_front(second);
        self.outbox.push_front(batch);
    }

    /// Forgets a batch for good: its files are deleted and its memory released.
    /// Returns how many events it held.
    fn release(&mut self, batch: Batch) -> usize {
        let count = batch.count();
        for segment in batch.segments {
            self.memory -= segment.in_memory();
            if let (Some(spool), Some(path)) = (&self.spool, &segment.path) {
                spool.remove(path);
            }
        }
        count
    }

    /// Forgets a batch and counts its events under `counter`.
    fn discard(&mut self, batch: Batch, counter: impl Fn(&Counters) -> &AtomicU64) {
        let count = self.release(batch);
        self.count(counter, count);
    }

    // ---- answering -----------------------------------------------------------------

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
            let waiting: u64 = mine().map(|b| b.count() as u64).sum();
            let hopeless = refused || mine().all(|b| b.not_before > flush.waiter.deadline);
            if waiting == 0 || hopeless {
                let failed = failed_now.saturating_sub(flush.failed_before);
                let _ = flush.waiter.reply.send(waiting + failed);
                return false;
            }
            true
        });
    }

    /// Ends the worker when a shutdown has nothing left to do or its time is up. What
    /// is undelivered stays in the spool; memory-only events are counted as lost.
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
        self.drain_channel(usize::MAX);
        self.journal();
        self.seal_all();
        let mut left = 0u64;
        let mut spooled = 0u64;
        for batch in std::mem::take(&mut self.outbox) {
            for segment in batch.segments {
                left += segment.count as u64;
                if segment.path.is_some() {
                    spooled += segment.count as u64;
                } else {
                    self.count(|c| &c.dropped_at_shutdown, segment.count);
                }
            }
        }
        self.count(|c| &c.left_in_spool, spooled as usize);
        if left > 0 {
            log::debug!(
                "telemetry: {left} event(s) not delivered before shutdown; {spooled} kept in the spool for a later run"
            );
        }
        self.spool = None; // releases this process's lock
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
        let rescan = self
            .rescan_possible()
            .then(|| self.last_rescan + RESCAN_EVERY);
        let deadlines = self
            .flushes
            .iter()
            .map(|f| f.waiter.deadline)
            .chain(self.shutdown.as_ref().map(|s| s.deadline));
        [interval, retry, rescan]
            .into_iter()
            .flatten()
            .chain(deadlines)
            .fold(now + IDLE_WAIT, Instant::min)
    }
}

/// A UUID v7 whose time part is the capture time.
fn uuid_v7_at(time: SystemTime) -> Uuid {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        since_epoch.as_secs(),
        since_epoch.subsec_nanos(),
    );
    Uuid::new_v7(ts)
}
