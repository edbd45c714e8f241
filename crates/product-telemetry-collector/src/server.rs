//! The HTTP side: PostHog's capture routes on axum, the answers they give, and the two ways
//! to run the collector — [`RunningCollector`] (a background thread with its own runtime,
//! for tests and demos) and [`run`] (blocking, until Ctrl-C or SIGTERM, for the CLI).
//!
//! Routes: `/batch` (20 MiB body) and `/i/v0/e`, `/e`, `/capture`, `/track`, `/engage`
//! (2 MiB body), each with or without a trailing slash, for POST and for GET with `?data=`;
//! CORS preflights (`OPTIONS`) are answered and origins mirrored, as PostHog does.
//! Answers: `200 {"status":"Ok"}` once the request's events are committed; otherwise a
//! JSON error body `{"type", "code", "detail", "attr"}` (the shape of PostHog's API errors)
//! with 400 (malformed), 401 (token), 413 (too large) or 503 (storage failed, retry).
//!
//! Shutdown is graceful and bounded: the listener stops accepting, in-flight requests get
//! [`CollectorConfig::shutdown_timeout`] to finish, then the writer drains its queue and
//! closes the database. An event is acknowledged only after its transaction commits, so no
//! acknowledged event is lost by stopping.

use std::collections::HashSet;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use jiff::Timestamp;
use serde::Serialize;
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, oneshot, watch};

use crate::config::{CollectorConfig, Limits};
use crate::decode::{self, DecodeError, RequestMeta};
use crate::error::CollectorError;
use crate::payload::{self, PayloadError, RequestContext};
use crate::store::{CheckpointConnection, IngestBatch, StoreError, WriteConnection};
use crate::writer::{self, WriterSender, WriterThread};

/// Bodies larger than this are decoded on the blocking pool rather than on a runtime worker.
const INLINE_DECODE_BYTES: usize = 256 * 1024;
/// How long the writer may take to drain its queue at shutdown.
const WRITER_DRAIN: Duration = Duration::from_secs(5);
/// How long the runtime may take to cancel what is left at shutdown.
const RUNTIME_STOP: Duration = Duration::from_secs(1);

/// The single-event routes (2 MiB bodies); `/batch` (20 MiB) and `/engage` are separate.
const EVENT_ROUTES: [&str; 4] = ["/i/v0/e", "/e", "/capture", "/track"];

#[derive(Debug, Clone)]
struct AppState {
    writer: WriterSender,
    /// One permit per request being handled: bounds memory (see [`Limits`]).
    slots: Arc<Semaphore>,
    limits: Limits,
    /// Accepted project keys; empty means any well-formed key.
    project_keys: Arc<HashSet<String>>,
}

#[derive(Debug, Clone, Copy)]
enum Route {
    Batch,
    Event,
    Engage,
}

fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/", get(|| async { "capture" }))
        .route("/batch", capture_route(Route::Batch))
        .route("/batch/", capture_route(Route::Batch));
    for path in EVENT_ROUTES {
        app = app
            .route(path, capture_route(Route::Event))
            .route(&format!("{path}/"), capture_route(Route::Event));
    }
    app = app
        .route("/engage", capture_route(Route::Engage))
        .route("/engage/", capture_route(Route::Engage));
    app.layer(axum::middleware::from_fn(cors)).with_state(state)
}

fn capture_route(route: Route) -> MethodRouter<AppState> {
    let handler = move |State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body| {
        capture(state, route, uri, headers, body)
    };
    get(handler).post(handler)
}

/// A permissive CORS policy like PostHog's (browsers' posthog-js needs it): preflights are
/// answered directly, and every answer mirrors the request's `Origin`.
async fn cors(request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let asked_headers = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned();
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight {
        (StatusCode::OK, axum::Json(CaptureOk { status: "Ok" })).into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        if let Some(asked) = asked_headers {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        }
    }
    response
}

/// One capture request, start to finish.
async fn capture(
    state: AppState,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match ingest(state, route, uri, headers, body).await {
        Ok(()) => (StatusCode::OK, axum::Json(CaptureOk { status: "Ok" })).into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

async fn ingest(
    state: AppState,
    route: Route,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<(), Rejection> {
    // Held until the request is answered; waiting here is the backpressure.
    let _slot = Arc::clone(&state.slots)
        .acquire_owned()
        .await
        .map_err(|_| Rejection::Internal)?;
    let body_limit = match route {
        Route::Batch => state.limits.batch_body_bytes,
        Route::Event | Route::Engage => state.limits.event_body_bytes,
    };
    let bytes = read_body(body, &headers, body_limit).await?;
    let received_at = Timestamp::now();
    let request = OwnedMeta::new(&uri, &headers);
    let decoded_limit = state.limits.decoded_bytes;
    let large = bytes.len() > INLINE_DECODE_BYTES;
    let project_keys = Arc::clone(&state.project_keys);
    // Decoding, validation and rendering: CPU work, moved off the runtime for large bodies.
    let work = move || -> Result<Option<IngestBatch>, Rejection> {
        let decoded = decode::decode_payload(request.as_meta(), &bytes, decoded_limit)?;
        let mut context =
            RequestContext::new(received_at).with_query_sent_at(decoded.query_sent_at);
        if matches!(route, Route::Engage) {
            context = context.on_engage();
        }
        let batch = payload::parse_request(&decoded.json, &context)?;
        if batch.events.is_empty() {
            // Only events PostHog drops on arrival: accepted, nothing to store.
            return Ok(None);
        }
        if !project_keys.is_empty() && !project_keys.contains(&batch.token) {
            return Err(Rejection::UnknownProjectKey);
        }
        Ok(Some(IngestBatch::new(batch, received_at)))
    };
    let rows = if large {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| Rejection::Internal)??
    } else {
        work()?
    };
    let Some(rows) = rows else {
        return Ok(());
    };
    let events = rows.len();
    let inserted = state.writer.write(rows).await?;
    tracing::debug!(events, inserted, "request stored");
    Ok(())
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Rejection> {
    if content_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(Rejection::BodyTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            Rejection::BodyTooLarge { limit }
        } else {
            Rejection::BodyRead
        }
    })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// The header and query values the decoder needs, owned so decoding can move to the
/// blocking pool.
struct OwnedMeta {
    query: Option<String>,
    content_type: Option<String>,
    content_encoding: Option<String>,
}

impl OwnedMeta {
    fn new(uri: &Uri, headers: &HeaderMap) -> OwnedMeta {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        OwnedMeta {
            query: uri.query().map(str::to_owned),
            content_type: text(header::CONTENT_TYPE),
            content_encoding: text(header::CONTENT_ENCODING),
        }
    }

    fn as_meta(&self) -> RequestMeta<'_> {
        RequestMeta {
            query: self.query.as_deref(),
            content_type: self.content_type.as_deref(),
            content_encoding: self.content_encoding.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct CaptureOk {
    status: &'static str,
}

/// Why a request was refused, and how that is answered.
#[derive(Debug)]
enum Rejection {
    Decode(DecodeError),
    Payload(PayloadError),
    UnknownProjectKey,
    BodyTooLarge { limit: usize },
    BodyRead,
    Store(StoreError),
    Internal,
}

impl From<DecodeError> for Rejection {
    fn from(e: DecodeError) -> Self {
        Rejection::Decode(e)
    }
}

impl From<PayloadError> for Rejection {
    fn from(e: PayloadError) -> Self {
        Rejection::Payload(e)
    }
}

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        Rejection::Store(e)
    }
}

/// PostHog's API error body.
#[derive(Serialize)]
struct ErrorBody {
    r#type: &'static str,
    code: &'static str,
    detail: String,
    attr: Option<&'static str>,
}

impl Rejection {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        const INVALID: &str = "validation_error";
        const AUTH: &str = "authentication_error";
        match self {
            Rejection::Decode(DecodeError::TooLarge { .. }) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID,
                "payload_too_large",
                self.detail(),
            ),
            Rejection::Decode(DecodeError::EmptyPayload) => {
                (StatusCode::BAD_REQUEST, INVALID, "no_data", self.detail())
            }
            Rejection::Decode(_) => (
                StatusCode::BAD_REQUEST,
                INVALID,
                "invalid_payload",
                self.detail(),
            ),
            Rejection::Payload(PayloadError::NoToken) => {
                (StatusCode::UNAUTHORIZED, AUTH, "no_api_key", self.detail())
            }
            Rejection::Payload(e) if e.is_auth() => (
                StatusCode::UNAUTHORIZED,
                AUTH,
                "invalid_api_key",
                self.detail(),
            ),
            Rejection::Payload(_) => (
                StatusCode::BAD_REQUEST,
                INVALID,
                "invalid_payload",
                self.detail(),
            ),
            Rejection::UnknownProjectKey => (
                StatusCode::UNAUTHORIZED,
                AUTH,
                "invalid_api_key",
                self.detail(),
            ),
            Rejection::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID,
                "payload_too_large",
                self.detail(),
            ),
            Rejection::BodyRead => (
                StatusCode::BAD_REQUEST,
                INVALID,
                "invalid_payload",
                self.detail(),
            ),
            Rejection::Store(_) | Rejection::Internal => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "storage_unavailable",
                self.detail(),
            ),
        }
    }

    fn detail(&self) -> String {
        match self {
            Rejection::Decode(e) => e.to_string(),
            Rejection::Payload(e) => e.to_string(),
            Rejection::UnknownProjectKey => {
                "API key is not valid: not a project key of this collector".into()
            }
            Rejection::BodyTooLarge { limit } => {
                format!("maximum request size exceeded: more than {limit} bytes")
            }
            Rejection::BodyRead => "failed to read the request body".into(),
            // Storage details stay in the log; clients only need to retry.
            Rejection::Store(_) | Rejection::Internal => "transient error, please retry".into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (status, r#type, code, detail) = self.parts();
        if let Rejection::Store(e) = &self {
            tracing::warn!(error = %e, "request not stored");
        } else if status.is_server_error() {
            tracing::warn!(rejection = ?self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), %detail, "request refused");
        }
        let body = ErrorBody {
            r#type,
            code,
            detail,
            attr: None,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A collector bound to its address, ready to serve.
struct Prepared {
    runtime: Runtime,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    app: Router,
    writer: WriterThread,
    shutdown_timeout: Duration,
}

fn prepare(addr: SocketAddr, config: CollectorConfig) -> Result<Prepared, CollectorError> {
    let conn = WriteConnection::open(&config.db_path)?;
    let checkpointer = CheckpointConnection::open(&config.db_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads.max(1))
        .thread_name("collector-worker")
        .enable_all()
        .build()
        .map_err(CollectorError::Runtime)?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|source| CollectorError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| CollectorError::Bind { addr, source })?;
    let (sender, writer) = writer::spawn(conn, checkpointer).map_err(CollectorError::Runtime)?;
    let state = AppState {
        writer: sender,
        slots: Arc::new(Semaphore::new(config.limits.concurrent_requests.max(1))),
        limits: config.limits,
        project_keys: Arc::new(config.project_keys.into_iter().collect()),
    };
    Ok(Prepared {
        runtime,
        listener,
        addr,
        app: router(state),
        writer,
        shutdown_timeout: config.shutdown_timeout,
    })
}

impl Prepared {
    /// Serves until `stop` resolves, then shuts down within bounds (see the module docs).
    fn serve(self, stop: impl Future<Output = ()> + Send + 'static) -> Result<(), CollectorError> {
        let Prepared {
            runtime,
            listener,
            app,
            writer,
            shutdown_timeout,
            ..
        } = self;
        let served = runtime.block_on(async move {
            let (stopping_tx, mut stopping_rx) = watch::channel(false);
            let graceful = async move {
                stop.await;
                let _ = stopping_tx.send(true);
            };
            let server = axum::serve(listener, app)
                .with_graceful_shutdown(graceful)
                .into_future();
            let cut_off = async move {
                if stopping_rx.wait_for(|stopping| *stopping).await.is_ok() {
                    tokio::time::sleep(shutdown_timeout).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                served = server => served.map_err(CollectorError::Serve),
                () = cut_off => {
                    tracing::warn!(?shutdown_timeout, "in-flight requests cut off at shutdown");
                    Ok(())
                }
            }
        });
        // Cancels what is left (connections cut off above); their writer senders go with them.
        runtime.shutdown_timeout(RUNTIME_STOP);
        if !writer.join_until(Instant::now() + WRITER_DRAIN) {
            return Err(CollectorError::ShutdownTimeout(WRITER_DRAIN));
        }
        served
    }
}

/// A collector serving on a background thread with its own runtime; for tests and demos.
///
/// Dropping it shuts it down (within bounds); [`RunningCollector::shutdown`] does the same
/// and reports how it went.
///
/// ```
/// use product_telemetry_collector::{CollectorConfig, RunningCollector, Store};
///
/// let dir = tempfile::tempdir()?;
/// let db = dir.path().join("events.sqlite");
/// let collector = RunningCollector::start(
///     "127.0.0.1:0".parse()?,
///     CollectorConfig::new(&db).with_project_key("phc_demo"),
/// )?;
/// assert!(collector.url().starts_with("http://127.0.0.1:"));
/// collector.shutdown()?;
/// assert_eq!(Store::open(&db)?.count()?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RunningCollector {
    addr: SocketAddr,
    db_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), CollectorError>>>,
    finished: std::sync::mpsc::Receiver<()>,
    stop_bound: Duration,
}

impl RunningCollector {
    /// Opens (or creates) the database, binds `addr` (port 0 picks a free port) and starts
    /// serving on a background thread. Returns once the socket is bound, so requests can be
    /// sent right away.
    pub fn start(
        addr: SocketAddr,
        config: CollectorConfig,
    ) -> Result<RunningCollector, CollectorError> {
        let db_path = config.db_path.clone();
        let stop_bound = config.shutdown_timeout + RUNTIME_STOP + WRITER_DRAIN;
        let prepared = prepare(addr, config)?;
        let addr = prepared.addr;
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished_tx, finished) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("collector".into())
            .spawn(move || {
                let result = prepared.serve(async move {
                    // Either a stop message or the handle being dropped.
                    let _ = stopped.await;
                });
                let _ = finished_tx.send(());
                result
            })
            .map_err(CollectorError::Runtime)?;
        Ok(RunningCollector {
            addr,
            db_path,
            stop: Some(stop),
            thread: Some(thread),
            finished,
            stop_bound,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to point a PostHog client at, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The database it writes to.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Stops accepting, lets in-flight requests finish (bounded), drains the writer and
    /// closes the database. Every acknowledged event is committed when this returns `Ok`.
    pub fn shutdown(mut self) -> Result<(), CollectorError> {
        self.stop_and_wait()
    }

    fn stop_and_wait(&mut self) -> Result<(), CollectorError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        match self.finished.recv_timeout(self.stop_bound) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                thread.join().map_err(|_| CollectorError::Panicked)?
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(CollectorError::ShutdownTimeout(self.stop_bound))
            }
        }
    }
}

impl Drop for RunningCollector {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_wait() {
            tracing::warn!(error = %e, "collector shutdown on drop");
        }
    }
}

/// Runs a collector in the calling thread until Ctrl-C or SIGTERM.
///
/// Prints one line to stdout once listening — `listening on http://127.0.0.1:8474` — and
/// then shuts down gracefully on the first signal (see the module docs): every event that was
/// acknowledged is committed to the database when this returns.
pub fn run(addr: SocketAddr, config: CollectorConfig) -> Result<(), CollectorError> {
    let prepared = prepare(addr, config)?;
    let stop = {
        let _runtime = prepared.runtime.enter();
        termination_signal()?
    };
    println!("listening on http://{}", prepared.addr);
    prepared.serve(stop)
}

/// Resolves on the first Ctrl-C (SIGINT) or SIGTERM. Must be called inside the runtime.
fn termination_signal() -> Result<impl Future<Output = ()> + Send + 'static, CollectorError> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(CollectorError::Signal)?;
    Ok(async move {
        #[cfg(unix)]
        let terminated = terminate.recv();
        #[cfg(not(unix))]
        let terminated = std::future::pending::<Option<()>>();
        let interrupted = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = interrupted => {}
            _ = terminated => {}
        }
        tracing::info!("termination signal received; shutting down");
    })
}
