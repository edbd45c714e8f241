//! The PostHog client layer: explicit distinct ids, queueing, batching and delivery.
//!
//! [`Client`] knows nothing about consent or install ids; it sends what it is given.
//! [`ProductTelemetry`](crate::ProductTelemetry) builds on it. `capture` checks a flag,
//! stamps the time and moves the event into a bounded channel (bounded in count and
//! in estimated bytes): no serialisation, no I/O, no lock held across anything slow.
//! One named background thread ([`worker`](crate::worker)) does the rest.
//!
//! ```no_run
//! use std::time::Duration;
//! use product_telemetry::{Client, DynamicEvent, Message};
//!
//! let client = Client::builder("phc_project_key_placeholder")
//!     .host("https://eu.i.posthog.com")
//!     .build()?;
//! client.capture("user-42", DynamicEvent::new("signed_up").property("plan", "free"));
//! client.enqueue(Message::new("user-42", DynamicEvent::new("logged_in")));
//! client.shutdown(Duration::from_secs(2))?;
//! # Ok::<(), product_telemetry::Error>(())
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use uuid::Uuid;

use crate::event::{BoxedEvent, Event, Properties};
use crate::scrub::Scrubber;
use crate::spool::{DEFAULT_SPOOL_MAX_AGE, DEFAULT_SPOOL_MAX_BYTES};
use crate::stats::{Counters, Padded, Stats};
use crate::transport::{HttpTransport, Transport, batch_url};
use crate::worker::Worker;
use crate::{Environment, Error};

/// The default PostHog host (EU ingestion), as in the reference.
pub const DEFAULT_HOST: &str = "https://eu.i.posthog.com";

/// Set to a true-like value to print every event's JSON to stderr as it is queued for
/// sending.
pub const DEBUG_ENV: &str = "PRODUCT_TELEMETRY_DEBUG";

/// Set to a true-like value to print each request body exactly as it would be sent
/// (uncompressed) to stderr, and send nothing.
pub const DRY_RUN_ENV: &str = "PRODUCT_TELEMETRY_DRY_RUN";

/// One event for a specific distinct id, with an optional timestamp and uuid.
///
/// ```
/// use std::time::SystemTime;
/// use product_telemetry::{DynamicEvent, Message};
/// let message = Message::new("user-1", DynamicEvent::new("imported"))
///     .timestamp(SystemTime::UNIX_EPOCH)
///     .uuid(uuid::Uuid::now_v7());
/// ```
#[derive(Debug)]
pub struct Message {
    pub(crate) event: BoxedEvent,
    pub(crate) distinct_id: Arc<str>,
    pub(crate) timestamp: SystemTime,
    pub(crate) uuid: Option<Uuid>,
}

impl Message {
    /// A message stamped with the current time; its uuid (v7) is assigned by the worker.
    pub fn new(distinct_id: impl Into<Arc<str>>, event: impl Event) -> Self {
        Message::boxed(distinct_id.into(), BoxedEvent::new(event))
    }

    pub(crate) fn boxed(distinct_id: Arc<str>, event: BoxedEvent) -> Self {
        Message {
            event,
            distinct_id,
            timestamp: SystemTime::now(),
            uuid: None,
        }
    }

    /// When the event happened (default: when the message was made).
    pub fn timestamp(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Fixes the event's uuid (default: a UUID v7 from the timestamp).
    pub fn uuid(mut self, uuid: Uuid) -> Self {
        self.uuid = Some(uuid);
        self
    }
}

/// Configures and starts a [`Client`].
pub struct ClientBuilder {
    pub(crate) api_key: String,
    pub(crate) host: String,
    pub(crate) flush_at: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) max_queue_events: usize,
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_retries: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) gzip: bool,
    pub(crate) properties: Properties,
    pub(crate) forced: Properties,
    pub(crate) debug: bool,
    pub(crate) spool_dir: Option<PathBuf>,
    pub(crate) spool_max_bytes: u64,
    pub(crate) spool_max_age: Duration,
    pub(crate) honour_remembered_backoff: bool,
    pub(crate) scrubber: Option<Scrubber>,
    pub(crate) trusted: Vec<String>,
    pub(crate) dry_run: bool,
    pub(crate) sent_log: Option<PathBuf>,
    pub(crate) common_properties: Option<Environment>,
    transport: Option<Box<dyn Transport>>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("host", &self.host)
            .field("flush_at", &self.flush_at)
            .field("flush_interval", &self.flush_interval)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    fn new(api_key: impl Into<String>) -> Self {
        let mut properties = Properties::new();
        properties.insert("$lib".into(), Value::from(crate::LIB_NAME));
        properties.insert("$lib_version".into(), Value::from(crate::LIB_VERSION));
        ClientBuilder {
            api_key: api_key.into(),
            host: DEFAULT_HOST.to_string(),
            flush_at: 100,
            flush_interval: Duration::from_secs(1),
            max_queue_events: 10_000,
            max_queue_bytes: 8 * 1024 * 1024,
            max_retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            gzip: true,
            properties,
            forced: Properties::new(),
            debug: std::env::var(DEBUG_ENV).is_ok_and(|v| crate::is_true_like(&v)),
            spool_dir: None,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            spool_max_age: DEFAULT_SPOOL_MAX_AGE,
            honour_remembered_backoff: true,
            scrubber: None,
            trusted: Vec::new(),
            dry_run: std::env::var(DRY_RUN_ENV).is_ok_and(|v| crate::is_true_like(&v)),
            sent_log: None,
            common_properties: None,
            transport: None,
        }
    }

    /// The PostHog host: `https://…`, or `http://` to a loopback address.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Send as soon as this many events are waiting (1–100, default 100).
    pub fn flush_at(mut self, events: usize) -> Self {
        self.flush_at = events.clamp(1, crate::batch::MAX_BATCH_EVENTS);
        self
    }

    /// Send waiting events at least this often (default 1 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// The most events waiting in memory (default 10 000); beyond it new events are
    /// dropped and counted.
    pub fn max_queue_events(mut self, events: usize) -> Self {
        self.max_queue_events = events.max(1);
        self
    }

    /// The most bytes waiting in memory, estimated before serialisation and exact after
    /// (default 8 MiB).
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.max_queue_bytes = bytes.max(1024);
        self
    }

    /// Retries of a batch after a transient failure (default 3).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The first retry delay, doubled each retry up to `max` (default 500 ms and 30 s).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max.max(base);
        self
    }

    /// The longest `Retry-After` honoured (default 60 s).
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// TCP/TLS connect timeout (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Overall timeout of one request (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Gzip request bodies (default on).
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// A property added to every event that does not set it itself.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// A property set on every event that the event itself cannot override (the
    /// anonymous service forces `$ip`, `$geoip_disable` and `$process_person_profile`).
    pub fn forced_property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.forced.insert(key.into(), value.into());
        self
    }

    /// Print each event's JSON to stderr (default: from [`DEBUG_ENV`]).
    pub fn debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// Keeps undelivered events in this folder (see [`spool`](crate::spool)), so they
    /// survive crashes, offline runs and early exits and are delivered by a later run.
    /// Without it (the default for a plain client) events live in memory only.
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
    }

    /// Bounds the spool (default 4 MiB and 14 days); past them the oldest events are
    /// evicted and counted.
    pub fn spool_limits(mut self, max_bytes: u64, max_age: Duration) -> Self {
        self.spool_max_bytes = max_bytes;
        self.spool_max_age = max_age;
        self
    }

    /// Whether a backoff remembered in the spool by an earlier run delays this run's
    /// first attempt (default on, so failing runs don't each pay a timeout). An
    /// on-demand flush turns it off.
    pub fn honour_remembered_backoff(mut self, on: bool) -> Self {
        self.honour_remembered_backoff = on;
        self
    }

    /// Passes every string property value through `scrubber` on the worker before it
    /// is sent (default: no scrubbing for a plain client; the anonymous service turns
    /// it on). Properties named with [`trusted_property`](Self::trusted_property) and
    /// the library's own keys are left alone.
    pub fn scrubber(mut self, scrubber: Option<Scrubber>) -> Self {
        self.scrubber = scrubber;
        self
    }

    /// Print each request body to stderr instead of sending it (default: from
    /// [`DRY_RUN_ENV`]).
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// Keep a bounded log of the last events the server acknowledged in this file, so
    /// a user can see exactly what was shared (see [`sent_log`](crate::sent_log)).
    pub fn sent_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.sent_log = Some(path.into());
        self
    }

    /// Add the common properties (OS, architecture, a per-process session id, CI and
    /// its vendor), computed once on the worker from `env`.
    pub fn common_properties(mut self, env: Environment) -> Self {
        self.common_properties = Some(env);
        self
    }

    /// A top-level property the scrubber leaves alone.
    pub fn trusted_property(mut self, key: impl Into<String>) -> Self {
        self.trusted.push(key.into());
        self
    }

    /// Replaces the HTTP transport (for tests, or to observe requests).
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Box::new(transport));
        self
    }

    /// The same settings with the default transport: what a forked child rebuilds from.
    fn recipe(&self) -> ClientBuilder {
        ClientBuilder {
            api_key: self.api_key.clone(),
            host: self.host.clone(),
            flush_at: self.flush_at,
            flush_interval: self.flush_interval,
            max_queue_events: self.max_queue_events,
            max_queue_bytes: self.max_queue_bytes,
            max_retries: self.max_retries,
            backoff_base: self.backoff_base,
            backoff_max: self.backoff_max,
            max_retry_after: self.max_retry_after,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            gzip: self.gzip,
            properties: self.properties.clone(),
            forced: self.forced.clone(),
            debug: self.debug,
            spool_dir: self.spool_dir.clone(),
            spool_max_bytes: self.spool_max_bytes,
            spool_max_age: self.spool_max_age,
            honour_remembered_backoff: self.honour_remembered_backoff,
            scrubber: self.scrubber.clone(),
            trusted: self.trusted.clone(),
            dry_run: self.dry_run,
            sent_log: self.sent_log.clone(),
            common_properties: self.common_properties.clone(),
            transport: None,
        }
    }

    /// Validates the configuration and starts the worker thread.
    pub fn build(mut self) -> Result<Client, Error> {
        crate::validate_api_key(&self.api_key)?;
        let url = batch_url(&self.host)?;
        crate::fork::watch();
        let recipe = self.recipe();
        let transport = self
            .transport
            .take()
            .unwrap_or_else(|| Box::new(HttpTransport::new(self.connect_timeout)));
        let (tx, rx) = mpsc::sync_channel(self.max_queue_events);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            queued_bytes: Padded(AtomicUsize::new(0)),
            max_queue_bytes: self.max_queue_bytes,
            sleeping: Padded(AtomicBool::new(false)),
            closed: AtomicBool::new(false),
            warned_full: AtomicBool::new(false),
            control: Mutex::new(Control::default()),
        });
        let worker = Worker::new(self, url, transport, rx, Arc::clone(&shared));
        let handle = std::thread::Builder::new()
            .name("product-telemetry".into())
            .spawn(move || worker.run())
            .map_err(Error::Spawn)?;
        Ok(Client {
            inner: Arc::new(ClientInner {
                tx,
                shared,
                worker: handle.thread().clone(),
                generation: crate::fork::generation(),
                recipe: Mutex::new(recipe),
                reborn: Mutex::new(None),
            }),
        })
    }
}

/// What the capturing threads and the worker share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    /// Estimated bytes of events in the channel.
    pub(crate) queued_bytes: Padded<AtomicUsize>,
    pub(crate) max_queue_bytes: usize,
    /// The worker is parked with nothing to do: the next event must wake it. While it
    /// is active it polls, and capturing threads never pay for a wake-up.
    pub(crate) sleeping: Padded<AtomicBool>,
    /// Shutdown began: new events are refused.
    pub(crate) closed: AtomicBool,
    warned_full: AtomicBool,
    pub(crate) control: Mutex<Control>,
}

impl Shared {
    pub(crate) fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Requests from the API threads to the worker.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub(crate) flushes: Vec<Waiter>,
    pub(crate) persists: Vec<Waiter>,
    pub(crate) shutdown: Option<Waiter>,
}

/// Someone waiting for the worker, until `deadline`.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) deadline: Instant,
    pub(crate) reply: mpsc::Sender<u64>,
}

/// What travels in the channel.
pub(crate) struct Queued {
    pub(crate) message: Message,
    /// The bytes it holds in the queue's budget.
    pub(crate) size: usize,
}

struct ClientInner {
    tx: SyncSender<Queued>,
    shared: Arc<Shared>,
    /// The worker thread, to unpark it.
    worker: std::thread::Thread,
    /// The fork generation this client's worker runs in.
    generation: u64,
    /// How to start a new worker in a forked child.
    recipe: Mutex<ClientBuilder>,
    /// The client standing in for this one in a forked child.
    reborn: Mutex<Option<Client>>,
}

impl Drop for ClientInner {
    /// The last handle is gone: close the channel and wake the worker, which then
    /// delivers what it holds (within one request timeout) and stops.
    fn drop(&mut self) {
        let (closed, _) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.tx, closed));
        self.worker.unpark();
    }
}

impl fmt::Debug for ClientInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientInner")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A PostHog client: a handle on the queue and its background worker.
///
/// Cheap to clone; every clone feeds the same worker. Dropping the last clone lets the
/// worker deliver what it holds (within the request timeout) and stop; call
/// [`shutdown`](Self::shutdown) to wait for that with a bound.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl Client {
    /// Starts configuring a client for the project `api_key`.
    pub fn builder(api_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(api_key)
    }

    /// Captures `event` for `distinct_id`. Never blocks, never fails: when the queue is
    /// full or the client is shut down, the event is dropped and counted.
    pub fn capture(&self, distinct_id: impl Into<Arc<str>>, event: impl Event) {
        self.enqueue(Message::new(distinct_id, event));
    }

    /// Queues a prepared message. Never blocks, never fails.
    pub fn enqueue(&self, message: Message) {
        if self.inner.generation != crate::fork::generation() {
            if let Some(child) = self.in_forked_child() {
                child.enqueue(message);
            }
            return;
        }
        let shared = &self.inner.shared;
        if shared.closed.load(Ordering::Relaxed) {
            Counters::add(&shared.counters.dropped_after_shutdown, 1);
            return;
        }
        Counters::add(&shared.counters.captured, 1);
        let size = message.event.size_hint() + message.distinct_id.len() + 64;
        let before = shared.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if before + size > shared.max_queue_bytes {
            shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.dropped_full();
            return;
        }
        match self.inner.tx.try_send(Queued { message, size }) {
            Ok(()) => {
                // Pairs with the worker's store before it parks: either it sees this
                // event, or this thread sees it asleep and wakes it.
                std::sync::atomic::fence(Ordering::SeqCst);
                if shared.sleeping.load(Ordering::Relaxed)
                    && shared.sleeping.swap(false, Ordering::AcqRel)
                {
                    self.inner.worker.unpark();
                }
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                self.dropped_full();
            }
        }
    }

    /// In a process forked after this client started: the client with a worker of this
    /// process, started on first use. `None` if it cannot be started.
    fn in_forked_child(&self) -> Option<Client> {
        let generation = crate::fork::generation();
        // `try_lock`: a lock held by a thread of the parent at fork time stays held.
        let mut reborn = self.inner.reborn.try_lock().ok()?;
        if let Some(client) = reborn.as_ref().filter(|c| c.inner.generation == generation) {
            return Some(client.clone());
        }
        let recipe = self.inner.recipe.try_lock().ok()?.recipe();
        match recipe.build() {
            Ok(client) => {
                *reborn = Some(client.clone());
                Some(client)
            }
            Err(e) => {
                log::debug!("telemetry: cannot start a worker in the forked child: {e}");
                None
            }
        }
    }

    /// This client, or its stand-in in a forked child.
    fn live(&self) -> Option<Client> {
        if self.inner.generation == crate::fork::generation() {
            Some(self.clone())
        } else {
            self.in_forked_child()
        }
    }

    fn dropped_full(&self) {
        let shared = &self.inner.shared;
        Counters::add(&shared.counters.dropped_queue_full, 1);
        if !shared.warned_full.swap(true, Ordering::Relaxed) {
            log::warn!("telemetry queue is full; events are being dropped");
        }
    }

    /// Delivers everything captured so far, waiting at most `timeout`.
    ///
    /// Returns `Ok` when every event has been acknowledged, [`Error::Undelivered`]
    /// when some could not be (the endpoint refused them, or retries are still pending
    /// past the timeout), [`Error::Timeout`] when the worker did not answer in time.
    /// Work goes on in the background either way.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let live = self.live().ok_or(Error::ShutDown)?;
        live.request(timeout, |control, waiter| control.flushes.push(waiter))
    }

    /// Waits (at most `timeout`) until every event captured so far is written to the
    /// spool or delivered, so that it survives a crash of this process. Returns
    /// [`Error::Undelivered`] with the number of events that exist in memory only (no
    /// spool configured, or the disk refused them).
    pub fn persist(&self, timeout: Duration) -> Result<(), Error> {
        let live = self.live().ok_or(Error::ShutDown)?;
        live.request(timeout, |control, waiter| control.persists.push(waiter))
    }

    /// Stops accepting events, delivers what is queued and stops the worker, waiting at
    /// most `timeout`. What is undelivered at the deadline stays in the spool (counted
    /// in [`Stats::left_in_spool`]) or, without one, is counted in
    /// [`Stats::dropped_at_shutdown`]. Calling it again returns at once.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let live = self.live().ok_or(Error::ShutDown)?;
        if live.inner.shared.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        live.request(timeout, |control, waiter| control.shutdown = Some(waiter))
    }

    /// Hands the worker a request and waits for its answer, at most `timeout`.
    fn request(
        &self,
        timeout: Duration,
        register: impl FnOnce(&mut Control, Waiter),
    ) -> Result<(), Error> {
        let (reply, answer) = mpsc::channel();
        let deadline = Instant::now() + timeout;
        register(&mut self.inner.shared.control(), Waiter { deadline, reply });
        self.wake();
        wait(&answer, timeout)
    }

    /// The client's counters.
    pub fn stats(&self) -> Stats {
        match self.live() {
            Some(live) => live.inner.shared.counters.snapshot(),
            None => self.inner.shared.counters.snapshot(),
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shared.closed.load(Ordering::Relaxed)
    }

    /// Wakes the worker to look at a control request.
    fn wake(&self) {
        self.inner.worker.unpark();
    }
}

fn wait(answer: &mpsc::Receiver<u64>, timeout: Duration) -> Result<(), Error> {
    match answer.recv_timeout(timeout) {
        Ok(0) => Ok(()),
        Ok(undelivered) => Err(Error::Undelivered { undelivered }),
        Err(RecvTimeoutError::Timeout) => Err(Error::Timeout(timeout)),
        Err(RecvTimeoutError::Disconnected) => Err(Error::ShutDown),
    }
}
