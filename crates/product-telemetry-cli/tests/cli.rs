//! The `product-telemetry` binary end to end: delivery to a loopback server, opt-out,
//! status, user-id and usage errors.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use test_server::TestServer;

const KEY: &str = "phc_test_placeholder_key";

fn cli(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_product-telemetry"));
    command
        .env_clear()
        .env("HOME", cache.join("home"))
        .env("XDG_CACHE_HOME", cache)
        .args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run product-telemetry")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn capture_delivers_properties_with_the_shared_id() {
    let server = TestServer::ok();
    let cache = tempfile::tempdir().unwrap();
    let url = server.url();
    let out = cli(
        cache.path(),
        &[
            "--app",
            "installer",
            "--host",
            &url,
            "--api-key",
            KEY,
            "--app-version",
            "2.0.1",
            "capture",
            "install_finished",
            "--prop",
            "target=linux",
            "--prop",
            "note=a=b",
            "--props-json",
            r#"{"duration_ms": 1520, "target": "overridden"}"#,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events = server.wait_for_events(1, Duration::from_secs(10));
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["event"], "install_finished");
    assert_eq!(event["properties"]["target"], "linux");
    assert_eq!(event["properties"]["note"], "a=b");
    assert_eq!(event["properties"]["duration_ms"], 1520);
    assert_eq!(event["properties"]["sdk_version"], "2.0.1");
    let id = std::fs::read_to_string(cache.path().join("installer/telemetry_user_id")).unwrap();
    assert_eq!(event["distinct_id"], id.as_str());

    let printed = cli(cache.path(), &["--app", "installer", "user-id"], &[]);
    assert_eq!(stdout(&printed).trim(), id);
}

#[test]
fn options_can_come_from_the_environment() {
    let server = TestServer::ok();
    let cache = tempfile::tempdir().unwrap();
    let url = server.url();
    let out = cli(
        cache.path(),
        &["capture", "from_env"],
        &[
            ("PRODUCT_TELEMETRY_APP", "envapp"),
            ("PRODUCT_TELEMETRY_HOST", &url),
            ("PRODUCT_TELEMETRY_API_KEY", KEY),
            ("PRODUCT_TELEMETRY_APP_VERSION", "0.0.9"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events = server.wait_for_events(1, Duration::from_secs(10));
    assert_eq!(events[0]["properties"]["sdk_version"], "0.0.9");
    assert!(cache.path().join("envapp/telemetry_user_id").exists());
}

#[test]
fn opted_out_capture_writes_nothing_and_connects_nowhere() {
    for (var, value) in [("DO_NOT_TRACK", "1"), ("ANONYMIZED_TELEMETRY", "off")] {
        let server = TestServer::ok();
        let cache = tempfile::tempdir().unwrap();
        let url = server.url();
        let out = cli(
            cache.path(),
            &["--host", &url, "--api-key", KEY, "capture", "e"],
            &[(var, value)],
        );
        assert!(out.status.success());
        assert_eq!(server.connections(), 0);
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0, "{var}");
        assert!(stdout(&out).is_empty());

        let status = cli(cache.path(), &["status"], &[(var, value)]);
        assert!(stdout(&status).contains(&format!("telemetry: disabled ({var}={value})")));
        let user_id = cli(cache.path(), &["user-id"], &[(var, value)]);
        assert!(!user_id.status.success());
        assert_eq!(
            std::fs::read_dir(cache.path()).unwrap().count(),
            0,
            "status and user-id create nothing"
        );
    }
}

#[test]
fn capture_exits_zero_quickly_when_delivery_fails() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let host = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    let out = cli(
        cache.path(),
        &[
            "--host",
            &host,
            "--api-key",
            KEY,
            "capture",
            "e",
            "--timeout",
            "300ms",
        ],
        &[],
    );
    assert!(out.status.success());
    assert!(start.elapsed() < Duration::from_secs(5));
    // Delivery failures are silent: the only thing on stderr is the first-run notice.
    let err = stderr(&out);
    assert!(
        err.starts_with("product-telemetry: anonymous usage data"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
    let again = cli(
        cache.path(),
        &[
            "--host",
            &host,
            "--api-key",
            KEY,
            "capture",
            "e",
            "--timeout",
            "300ms",
        ],
        &[],
    );
    assert!(
        stderr(&again).is_empty(),
        "the notice is shown once: {}",
        stderr(&again)
    );
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let cache = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--api-key", KEY, "capture", "e", "--prop", "novalue"],
            "KEY=VALUE",
        ),
        (
            &["--api-key", KEY, "capture", "e", "--prop", "=v"],
            "KEY=VALUE",
        ),
        (
            &["--api-key", KEY, "capture", "e", "--props-json", "{oops"],
            "invalid JSON",
        ),
        (
            &["--api-key", KEY, "capture", "e", "--props-json", "[1]"],
            "JSON object",
        ),
        (&["--api-key", KEY, "capture", ""], "event name"),
        (
            &["--api-key", KEY, "capture", "e", "--timeout", "soon"],
            "timeout",
        ),
        (&["capture", "e"], "API key"),
        (&["capture"], "EVENT"),
    ];
    for (args, needle) in cases {
        let out = cli(cache.path(), args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn status_reports_the_decision_the_file_and_the_id() {
    let cache = tempfile::tempdir().unwrap();
    let before = cli(cache.path(), &["--app", "st", "status", "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&before.stdout).unwrap();
    assert_eq!(json["enabled"], true);
    assert_eq!(json["decided_by"], "enabled (default)");
    assert_eq!(json["id_state"], "not created yet");
    assert_eq!(json["host"], "https://eu.i.posthog.com");
    assert!(!cache.path().join("st").exists(), "status creates nothing");

    let id = stdout(&cli(cache.path(), &["--app", "st", "user-id"], &[]));
    let text = stdout(&cli(cache.path(), &["--app", "st", "status"], &[]));
    assert!(text.contains("telemetry: enabled (default)"), "{text}");
    assert!(
        text.contains(&format!("user id:   {} (saved)", id.trim())),
        "{text}"
    );
    assert!(text.contains("st/telemetry_user_id"), "{text}");
}

#[test]
fn proxy_variables_are_honoured() {
    let server = TestServer::ok();
    // A "proxy" that records the CONNECT and hangs up: enough to see it was used.
    let proxy = TestServer::start(Vec::new(), test_server::Reply::Reset);
    let cache = tempfile::tempdir().unwrap();
    let url = server.url();
    let proxy_url = proxy.url();
    let args = [
        "--host",
        url.as_str(),
        "--api-key",
        KEY,
        "capture",
        "via_proxy",
        "--timeout",
        "1s",
    ];
    let out = cli(cache.path(), &args, &[("HTTP_PROXY", &proxy_url)]);
    assert!(out.status.success());
    // The foreground try or the background delivery it hands over to.
    let through_proxy = proxy.wait_for_requests(1, Duration::from_secs(10));
    assert!(!through_proxy.is_empty(), "the proxy was used");
    assert_eq!(through_proxy[0].method, "CONNECT");
    assert_eq!(through_proxy[0].path, server.addr().to_string());
    assert!(
        server.requests().is_empty(),
        "nothing went around the proxy"
    );

    // The background delivery the first capture handed over to gives up after its
    // `--timeout 1s`; after that nothing more reaches the proxy from it.
    std::thread::sleep(Duration::from_millis(1500));
    let before = proxy.requests().len();
    let host = server.addr().ip().to_string();
    let cache = tempfile::tempdir().unwrap(); // fresh: no spooled event, no remembered backoff
    let out = cli(
        cache.path(),
        &args,
        &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", &host)],
    );
    assert!(out.status.success());
    assert_eq!(
        proxy.requests().len(),
        before,
        "NO_PROXY bypasses the proxy"
    );
    assert_eq!(server.wait_for_events(1, Duration::from_secs(10)).len(), 1);
}

#[test]
fn debug_variable_prints_each_event_to_stderr() {
    let server = TestServer::ok();
    let cache = tempfile::tempdir().unwrap();
    let url = server.url();
    let args = [
        "--host",
        url.as_str(),
        "--api-key",
        KEY,
        "capture",
        "shown",
        "--prop",
        "k=v",
    ];
    let out = cli(cache.path(), &args, &[("PRODUCT_TELEMETRY_DEBUG", "1")]);
    assert!(out.status.success());
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("[product-telemetry] "))
        .expect(&err);
    let json: serde_json::Value =
        serde_json::from_str(&line["[product-telemetry] ".len()..]).unwrap();
    assert_eq!(json["event"], "shown");
    assert_eq!(json["properties"]["k"], "v");
    assert!(stdout(&out).is_empty(), "stdout untouched");
}

#[test]
fn concurrent_captures_each_land_exactly_once() {
    let db = tempfile::tempdir().unwrap();
    let collector = product_telemetry_collector::RunningCollector::start(
        "127.0.0.1:0".parse().unwrap(),
        product_telemetry_collector::CollectorConfig::new(db.path().join("events.sqlite")),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let url = collector.url();
    let children: Vec<_> = (0..16)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_product-telemetry"))
                .env_clear()
                .env("XDG_CACHE_HOME", cache.path())
                .args(["--host", &url, "--api-key", KEY, "capture", "parallel"])
                .args(["--prop", &format!("n={i}")])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    // What the foreground and the background deliveries did not send, an on-demand
    // flush does (at-least-once: the collector counts each uuid once).
    let store = product_telemetry_collector::Store::open(collector.db_path()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.count().unwrap() < 16 && Instant::now() < deadline {
        cli(
            cache.path(),
            &["--host", &url, "--api-key", KEY, "flush", "--timeout", "5s"],
            &[],
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = store
        .events(&product_telemetry_collector::EventFilter::all())
        .unwrap();
    let mut ns: Vec<&str> = events
        .iter()
        .map(|e| e.properties["n"].as_str().unwrap())
        .collect();
    ns.sort();
    ns.dedup();
    assert_eq!((events.len(), ns.len()), (16, 16));
    let ids: std::collections::HashSet<&str> =
        events.iter().map(|e| e.distinct_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "sixteen processes, one install id");
}

#[test]
fn an_undelivered_event_waits_in_the_spool_until_flush() {
    let hung = TestServer::start(Vec::new(), test_server::Reply::Hang);
    let cache = tempfile::tempdir().unwrap();
    let hung_url = hung.url();
    let out = cli(
        cache.path(),
        &[
            "--host",
            &hung_url,
            "--api-key",
            KEY,
            "capture",
            "patient",
            "--no-background",
        ],
        &[],
    );
    assert!(out.status.success());
    let status = cli(cache.path(), &["status", "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["spool"]["events_waiting"], 1, "{json}");
    let text = stdout(&cli(cache.path(), &["status"], &[]));
    assert!(
        text.contains("spool:     1 event(s) waiting in 1 file(s)"),
        "{text}"
    );

    let server = TestServer::ok();
    let url = server.url();
    let flushed = cli(
        cache.path(),
        &["--host", &url, "--api-key", KEY, "flush"],
        &[],
    );
    assert!(flushed.status.success());
    assert!(
        stdout(&flushed).contains("delivered 1 event(s); 0 left in the spool"),
        "{}",
        stdout(&flushed)
    );
    assert_eq!(
        server.wait_for_events(1, Duration::from_secs(10))[0]["event"],
        "patient"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&cli(cache.path(), &["status", "--json"], &[]).stdout).unwrap();
    assert_eq!(json["spool"]["events_waiting"], 0);
}

#[test]
fn an_app_name_that_is_a_path_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    for app in ["", ".", "..", "../escape", "/abs", "a/b", ".hidden"] {
        let out = cli(
            cache.path(),
            &["--app", app, "--api-key", KEY, "capture", "e"],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{app:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("app name"),
            "{app:?}: {}",
            stderr(&out)
        );
        let out = cli(cache.path(), &["--app", app, "telemetry", "disable"], &[]);
        assert_eq!(out.status.code(), Some(2), "{app:?}");
    }
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
