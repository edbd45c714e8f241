//! Shared helpers for the end-to-end tests: a telemetry configuration whose cache lives
//! in a given folder, a collector on loopback, and child processes of the test binary.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use product_telemetry::{Environment, TelemetryConfig};
use product_telemetry_collector::{CollectorConfig, RunningCollector};

/// A placeholder project key.
pub const KEY: &str = "phc_test_placeholder_key";

/// Telemetry for `app` with its cache under `home`, sending to `host`, with short
/// intervals and backoffs so the tests are quick.
pub fn config(home: &Path, host: &str) -> TelemetryConfig {
    TelemetryConfig::new("e2e", KEY)
        .host(host)
        .environment(Environment::from_pairs([("HOME", home.as_os_str())]))
        .client_options(|c| {
            c.flush_interval(Duration::from_millis(20))
                .backoff(Duration::from_millis(10), Duration::from_millis(100))
        })
}

/// The spool folder of [`config`].
pub fn spool_dir(home: &Path) -> std::path::PathBuf {
    config(home, "http://127.0.0.1:1")
        .spool_dir()
        .expect("a home folder gives a spool folder")
}

/// Segment files waiting in the spool of [`config`].
pub fn spooled_files(home: &Path) -> usize {
    std::fs::read_dir(spool_dir(home))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .count()
        })
        .unwrap_or(0)
}

/// A collector on an ephemeral 127.0.0.1 port, storing into `dir/events.sqlite`.
pub fn collector(dir: &Path) -> RunningCollector {
    RunningCollector::start(
        "127.0.0.1:0".parse().expect("address"),
        CollectorConfig::new(dir.join("events.sqlite")),
    )
    .expect("collector starts")
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind");
    format!("http://127.0.0.1:{port}")
}

/// Runs the test named `test` of the current test binary as a child process with
/// `env`, stdout piped.
pub fn child(test: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// A random number in `0..n` (no dependency needed: UUID v4 bits are random).
pub fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(n.max(1))) as u64
}
