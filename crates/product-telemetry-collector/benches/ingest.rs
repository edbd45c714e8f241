//! Collector ingest throughput: gzip batches of 100 events (about ten properties each) posted
//! to `/batch/` over loopback from a few client threads, stored in a temporary SQLite file.
//!
//! Run: `cargo bench -p product-telemetry-collector --bench ingest`
//! Knobs (environment): `BENCH_REQUESTS` per round (default 3000), `BENCH_CLIENTS` (default
//! 4), `BENCH_WORKERS` (collector runtime threads, default 2), `BENCH_ROUNDS` (default 3;
//! the median and the best round are reported), `BENCH_CLIENT` (`raw`, the default: a
//! minimal keep-alive HTTP/1.1 client; or `ureq`).
//!
//! Bodies are built and compressed before the clock starts, so the figure is the collector's
//! (HTTP, gunzip, JSON, validation, SQLite commit) plus the clients' HTTP cost. It ends by
//! checking that the database holds exactly the events sent, and fails otherwise.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use product_telemetry_collector::{CollectorConfig, EventFilter, RunningCollector, Store};
use serde_json::json;
use uuid::Uuid;

const EVENTS_PER_REQUEST: usize = 100;
const KEY: &str = "phc_bench";

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let requests = env_number("BENCH_REQUESTS", 3000);
    let clients = env_number("BENCH_CLIENTS", 4).max(1);
    let workers = env_number("BENCH_WORKERS", 2).max(1);
    let rounds = env_number("BENCH_ROUNDS", 3).max(1);
    let client = match std::env::var("BENCH_CLIENT").as_deref() {
        Ok("ureq") => ClientKind::Ureq,
        Ok("raw") | Err(_) => ClientKind::Raw,
        Ok(other) => return Err(format!("BENCH_CLIENT={other}: expected raw or ureq").into()),
    };
    let total_events = requests * EVENTS_PER_REQUEST;

    let bodies: Vec<Vec<u8>> = (0..requests).map(batch_body).collect::<Result<_, _>>()?;
    let wire_mib = bodies.iter().map(Vec::len).sum::<usize>() as f64 / (1024.0 * 1024.0);
    println!(
        "ingest: {total_events} events in {requests} gzip batches of {EVENTS_PER_REQUEST} \
         ({wire_mib:.1} MiB on the wire), {clients} client threads ({client:?} HTTP), {workers} \
         collector workers, {rounds} rounds on fresh databases"
    );

    let mut rates = Vec::with_capacity(rounds);
    for n in 1..=rounds {
        let round = run_round(&bodies, clients, workers, client)?;
        let rate = total_events as f64 / round.elapsed.as_secs_f64();
        rates.push(rate);
        let per_event = |seconds: f64| seconds * 1e6 / total_events as f64;
        println!(
            "  round {n}: {:.2} s, {rate:.0} events/s, stored count verified; \
             cpu {} µs/event in all, {} µs/event on the writer thread",
            round.elapsed.as_secs_f64(),
            round
                .cpu
                .map_or("?".into(), |c| format!("{:.1}", per_event(c))),
            round
                .writer_cpu
                .map_or("?".into(), |c| format!("{:.1}", per_event(c))),
        );
        println!(
            "    then reading it: events --event --since --limit 100 {:.0} ms, stats {:.0} ms",
            round.events_query.as_secs_f64() * 1e3,
            round.stats_query.as_secs_f64() * 1e3,
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "ingest: median {:.0} events/s, best {:.0} events/s",
        rates[rates.len() / 2],
        rates[rates.len() - 1]
    );
    Ok(())
}

struct Round {
    elapsed: Duration,
    /// CPU seconds of the whole process (collector and clients) during the round.
    cpu: Option<f64>,
    /// CPU seconds of the collector's writer thread.
    writer_cpu: Option<f64>,
    /// `Store::events` with a name, a since time and a limit, on the round's database.
    events_query: Duration,
    /// `Store::stats` on the round's database.
    stats_query: Duration,
}

/// Starts a collector on a fresh database, posts every body, stops it, checks the count.
fn run_round(
    bodies: &[Vec<u8>],
    clients: usize,
    workers: usize,
    client: ClientKind,
) -> Result<Round, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.sqlite");
    let collector = RunningCollector::start(
        "127.0.0.1:0".parse()?,
        CollectorConfig::new(&db)
            .with_project_key(KEY)
            .with_worker_threads(workers),
    )?;
    let addr = collector.addr();

    let cpu_before = cpu_seconds("/proc/self/stat");
    let started = Instant::now();
    let chunk = bodies.len().div_ceil(clients);
    let outcome: Result<(), String> = std::thread::scope(|scope| {
        let threads: Vec<std::thread::ScopedJoinHandle<'_, Result<(), String>>> = bodies
            .chunks(chunk)
            .map(|mine| {
                std::thread::Builder::new()
                    .name("bench-client".into())
                    .spawn_scoped(scope, move || post_all(addr, client, mine))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        threads
            .into_iter()
            .try_for_each(|t| t.join().map_err(|_| "client thread panicked".to_string())?)
    });
    outcome?;
    let elapsed = started.elapsed();
    let cpu = cpu_before.and_then(|before| Some(cpu_seconds("/proc/self/stat")? - before));
    let writer_cpu = thread_cpu_seconds("collector-write");
    collector.shutdown()?;

    let sent = (bodies.len() * EVENTS_PER_REQUEST) as u64;
    let store = Store::open(&db)?;
    let stored = store.count()?;
    if stored != sent {
        return Err(format!("stored {stored} events, sent {sent}").into());
    }
    // What reading a table this size costs (`events` and `stats` scan it).
    let started = Instant::now();
    let filter = EventFilter::all()
        .event("app_started")
        .since(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1))
        .limit(100);
    let listed = store.events(&filter)?.len();
    let events_query = started.elapsed();
    let started = Instant::now();
    store.stats()?;
    let stats_query = started.elapsed();
    if listed != 100 {
        return Err(format!("events listed {listed}, expected 100").into());
    }
    Ok(Round {
        elapsed,
        cpu,
        writer_cpu,
        events_query,
        stats_query,
    })
}

/// User + system CPU seconds from a Linux `stat` file (assumes 100 clock ticks a second).
fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are utime and stime; `after_name` starts at field 3.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds of this process's threads named `name` (Linux only).
fn thread_cpu_seconds(name: &str) -> Option<f64> {
    let mut total = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = task.path().join("stat");
            *total.get_or_insert(0.0) += cpu_seconds(stat.to_str()?)?;
        }
    }
    total
}

/// Which HTTP client the bench threads use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    /// A minimal keep-alive HTTP/1.1 writer on a `TcpStream`: the clients share the machine's
    /// two cores with the collector, so the leaner they are, the more the figure is the
    /// collector's.
    Raw,
    /// ureq 3, a real general-purpose client (costs a few µs per event more).
    Ureq,
}

fn post_all(addr: SocketAddr, kind: ClientKind, bodies: &[Vec<u8>]) -> Result<(), String> {
    match kind {
        ClientKind::Raw => {
            let mut client = RawClient::connect(addr).map_err(|e| e.to_string())?;
            bodies.iter().try_for_each(|body| client.post(body))
        }
        ClientKind::Ureq => post_all_ureq(&format!("http://{addr}/batch/"), bodies),
    }
}

/// Keep-alive HTTP/1.1 over one connection: one write per request, then the answer's status
/// line, headers and `Content-Length` body.
struct RawClient {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    line: String,
    host: String,
}

impl RawClient {
    fn connect(addr: SocketAddr) -> std::io::Result<RawClient> {
        let writer = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        writer.set_nodelay(true)?;
        writer.set_read_timeout(Some(Duration::from_secs(30)))?;
        writer.set_write_timeout(Some(Duration::from_secs(30)))?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(RawClient {
            writer,
            reader,
            request: Vec::with_capacity(16 * 1024),
            line: String::new(),
            host: addr.to_string(),
        })
    }

    fn post(&mut self, body: &[u8]) -> Result<(), String> {
        self.request.clear();
        write!(
            self.request,
            "POST /batch/ HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        self.request.extend_from_slice(body);
        self.writer
            .write_all(&self.request)
            .map_err(|e| e.to_string())?;

        let status = self.read_line()?;
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!("collector answered {status:?}"));
        }
        let mut content_length = 0usize;
        loop {
            let header = self.read_line()?;
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().map_err(|_| "bad content-length")?;
            }
        }
        let mut answer = vec![0u8; content_length];
        self.reader
            .read_exact(&mut answer)
            .map_err(|e| e.to_string())?;
        if answer != br#"{"status":"Ok"}"# {
            return Err(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&answer)
            ));
        }
        Ok(())
    }

    fn read_line(&mut self) -> Result<String, String> {
        self.line.clear();
        let n = self
            .reader
            .read_line(&mut self.line)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        Ok(self.line.trim_end().to_string())
    }
}

fn post_all_ureq(url: &str, bodies: &[Vec<u8>]) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        // Per-phase timeouts, not a global one: with a global timeout ureq resolves the
        // address on a fresh thread for every request, which would dominate the client cost.
        .timeout_connect(Some(Duration::from_secs(5)))
        // Smaller buffers than ureq's 128 KiB defaults: bodies are a few KiB.
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .timeout_send_body(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .build()
        .into();
    for body in bodies {
        let response = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .send(&body[..])
            .map_err(|e| e.to_string())?;
        if response.status() != 200 {
            return Err(format!("collector answered {}", response.status()));
        }
    }
    Ok(())
}

/// One gzip batch of 100 events, each with about ten properties, unique uuids (v7).
fn batch_body(request: usize) -> Result<Vec<u8>, std::io::Error> {
    const NAMES: [&str; 5] = [
        "command_run",
        "app_started",
        "app_exited",
        "feature_used",
        "error_seen",
    ];
    let now = jiff::Timestamp::now().to_string();
    let events: Vec<_> = (0..EVENTS_PER_REQUEST)
        .map(|i| {
            json!({
                "event": NAMES[i % NAMES.len()],
                "distinct_id": format!("install-{}", request % 50),
                "uuid": Uuid::now_v7().to_string(),
                "timestamp": now,
                "properties": {
                    "$lib": "product-telemetry",
                    "$lib_version": "0.1.0",
                    "$process_person_profile": false,
                    "$geoip_disable": true,
                    "os": "linux",
                    "arch": "x86_64",
                    "app_version": "1.4.2",
                    "command": "build",
                    "duration_ms": 1200 + i,
                    "success": i % 7 != 0,
                    "ci": false
                }
            })
        })
        .collect();
    let body = json!({"api_key": KEY, "sent_at": now, "batch": events}).to_string();
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(body.as_bytes())?;
    gz.finish()
}
