//! A scriptable HTTP/1.1 server on 127.0.0.1 for tests.
//!
//! It records every request (gzip bodies decoded) and answers from a script: a list of
//! [`Reply`]s used in order, then a default. A reply can also hang (accept, read, never
//! answer) or reset the connection. Everything stops when the server is dropped, and
//! every wait is bounded, so a test using it always ends by itself.
//!
//! ```
//! use test_server::{Reply, TestServer};
//! let server = TestServer::start(vec![Reply::status(503)], Reply::status(200));
//! assert!(server.url().starts_with("http://127.0.0.1:"));
//! ```

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any connection is kept, even when told to hang.
const MAX_HANG: Duration = Duration::from_secs(60);
/// Read timeout on each connection.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Answer with this status, headers and body.
    Respond {
        /// HTTP status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: String,
    },
    /// Read the request, then never answer (until the server is dropped).
    Hang,
    /// Read the request, then close the connection without answering.
    Reset,
}

impl Reply {
    /// A status with PostHog's `{"status":"Ok"}`-style body.
    pub fn status(status: u16) -> Reply {
        Reply::Respond {
            status,
            headers: Vec::new(),
            body: if status == 200 {
                r#"{"status":"Ok"}"#.to_string()
            } else {
                format!(r#"{{"error":"status {status}"}}"#)
            },
        }
    }

    /// A status with one extra header.
    pub fn with_header(status: u16, name: &str, value: &str) -> Reply {
        match Reply::status(status) {
            Reply::Respond { status, body, .. } => Reply::Respond {
                status,
                headers: vec![(name.to_string(), value.to_string())],
                body,
            },
            other => other,
        }
    }
}

/// A request as received.
#[derive(Clone, Debug)]
pub struct Request {
    /// `POST`, `GET`…
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// The body, gunzipped when `Content-Encoding: gzip`.
    pub body: Vec<u8>,
    /// The body as sent on the wire.
    pub raw_body: Vec<u8>,
    /// When the request was fully read.
    pub received: Instant,
}

impl Request {
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The events of a `/batch/` body.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.json()["batch"].as_array().cloned().unwrap_or_default()
    }

    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

struct State {
    script: VecDeque<Reply>,
    default: Reply,
    requests: Vec<Request>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    connections: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The server; stops when dropped.
pub struct TestServer {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
}

impl TestServer {
    /// Starts on an ephemeral 127.0.0.1 port.
    pub fn start(script: Vec<Reply>, default: Reply) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                script: script.into(),
                default,
                requests: Vec::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                accept_shared.connections.fetch_add(1, Ordering::SeqCst);
                let conn_shared = Arc::clone(&accept_shared);
                thread::spawn(move || serve(stream, &conn_shared));
            }
        });
        TestServer { addr, shared }
    }

    /// Answers 200 to everything.
    pub fn ok() -> TestServer {
        TestServer::start(Vec::new(), Reply::status(200))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    /// Every event of every request so far, in arrival order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.requests().iter().flat_map(Request::events).collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived or `timeout` passed; returns them.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.requests.clone()
    }

    /// Waits until at least `n` events arrived or `timeout` passed; returns them.
    pub fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            if events.len() >= n || Instant::now() >= deadline {
                return events;
            }
            let have = self.requests().len();
            self.wait_for_requests(have + 1, deadline.saturating_duration_since(Instant::now()));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        // Unblock the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        let reply = {
            let mut state = shared.lock();
            let reply = state
                .script
                .pop_front()
                .unwrap_or_else(|| state.default.clone());
            state.requests.push(request);
            shared.changed.notify_all();
            reply
        };
        match reply {
            Reply::Respond {
                status,
                headers,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} Status\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                if writer.write_all(head.as_bytes()).is_err()
                    || writer.write_all(body.as_bytes()).is_err()
                {
                    return;
                }
            }
            Reply::Hang => {
                let until = Instant::now() + MAX_HANG;
                while !shared.stop.load(Ordering::SeqCst) && Instant::now() < until {
                    thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            Reply::Reset => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut raw_body = vec![0; length];
    reader.read_exact(&mut raw_body).ok()?;
    let body = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw_body[..])
            .read_to_end(&mut out)
            .ok()?;
        out
    } else {
        raw_body.clone()
    };
    Some(Request {
        method,
        path,
        headers,
        body,
        raw_body,
        received: Instant::now(),
    })
}
