//! Collector ingest throughput: gzip batches of 100 events (about ten properties each) posted
//! to `/batch/` over loopback from a few client threads, stored in a temporary SQLite file.
//!
//! Run: `cargo bench -p product-telemetry-collector --bench ingest`
//! Knobs (environment): `BENCH_REQUESTS` per round (default 3000), `BENCH_CLIENTS` (default
//! 4), `BENCH_WORKERS` (collector runtime threads, default 2), `BENCH_ROUNDS` (default 3;
//! the median and the best round are reported).
//!
//! Bodies are built and compressed before the clock starts, so the figure is the collector's
//! (HTTP, gunzip, JSON, validation, SQLite commit) plus the clients' HTTP cost. It ends by
//! checking that the database holds exactly the events sent, and fails otherwise.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use product_telemetry_collector::{CollectorConfig, RunningCollector, Store};
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
    let total_events = requests * EVENTS_PER_REQUEST;

    let bodies: Vec<Vec<u8>> = (0..requests).map(batch_body).collect::<Result<_, _>>()?;
    let wire_mib = bodies.iter().map(Vec::len).sum::<usize>() as f64 / (1024.0 * 1024.0);
    println!(
        "ingest: {total_events} events in {requests} gzip batches of {EVENTS_PER_REQUEST} \
         ({wire_mib:.1} MiB on the wire), {clients} client threads, {workers} collector \
         workers, {rounds} rounds on fresh databases"
    );

    let mut rates = Vec::with_capacity(rounds);
    for n in 1..=rounds {
        let round = run_round(&bodies, clients, workers)?;
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
}

/// Starts a collector on a fresh database, posts every body, stops it, checks the count.
fn run_round(
    bodies: &[Vec<u8>],
    clients: usize,
    workers: usize,
) -> Result<Round, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.sqlite");
    let collector = RunningCollector::start(
        "127.0.0.1:0".parse()?,
        CollectorConfig::new(&db)
            .with_project_key(KEY)
            .with_worker_threads(workers),
    )?;
    let url = format!("{}/batch/", collector.url());

    let cpu_before = cpu_seconds("/proc/self/stat");
    let started = Instant::now();
    let chunk = bodies.len().div_ceil(clients);
    let outcome: Result<(), String> = std::thread::scope(|scope| {
        let threads: Vec<std::thread::ScopedJoinHandle<'_, Result<(), String>>> = bodies
            .chunks(chunk)
            .map(|mine| {
                std::thread::Builder::new()
                    .name("bench-client".into())
                    .spawn_scoped(scope, || post_all(&url, mine))
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
    let stored = Store::open(&db)?.count()?;
    if stored != sent {
        return Err(format!("stored {stored} events, sent {sent}").into());
    }
    Ok(Round {
        elapsed,
        cpu,
        writer_cpu,
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

fn post_all(url: &str, bodies: &[Vec<u8>]) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        // Per-phase timeouts, not a global one: with a global timeout ureq resolves the
        // address on a fresh thread for every request, which would dominate the client cost.
        .timeout_connect(Some(Duration::from_secs(5)))
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
