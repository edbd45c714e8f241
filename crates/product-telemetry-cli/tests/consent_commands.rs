//! Consent users can see and change: the precedence matrix (status agrees with what is
//! sent), `telemetry enable|disable|reset-id|log`, the first-run notice, dry run, and a
//! preference file that is corrupt, unwritable or a folder.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use test_server::TestServer;

const KEY: &str = "phc_test_placeholder_key";

fn cli(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_product-telemetry"));
    command
        .env_clear()
        .env("HOME", home)
        .args(["--app", "consent-app"])
        .args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run product-telemetry")
}

fn status(home: &Path, env: &[(&str, &str)]) -> serde_json::Value {
    let out = cli(home, &["telemetry", "status", "--json"], env);
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn preference(home: &Path) -> std::path::PathBuf {
    home.join(".config/consent-app/telemetry.json")
}

#[test]
fn precedence_matrix_status_agrees_with_what_is_sent() {
    let saved_cases: [Option<&str>; 3] = [None, Some("enable"), Some("disable")];
    let env_cases: [&[(&str, &str)]; 5] = [
        &[],
        &[("DO_NOT_TRACK", "1")],
        &[("ANONYMIZED_TELEMETRY", "false")],
        &[("ANONYMIZED_TELEMETRY", "true")],
        &[("DO_NOT_TRACK", "1"), ("ANONYMIZED_TELEMETRY", "true")],
    ];
    for saved in saved_cases {
        for env in env_cases {
            let home = tempfile::tempdir().unwrap();
            if let Some(command) = saved {
                assert!(
                    cli(home.path(), &["telemetry", command], &[])
                        .status
                        .success()
                );
            }
            let server = TestServer::ok();
            let url = server.url();
            let report = status(home.path(), env);
            let out = cli(
                home.path(),
                &["--host", &url, "--api-key", KEY, "capture", "matrix"],
                env,
            );
            assert!(out.status.success());
            // Enabled: the event arrives (perhaps from the background delivery).
            // Disabled: nothing arrives, however long one waits.
            let patience = if report["enabled"] == true {
                10_000
            } else {
                300
            };
            let sent = !server
                .wait_for_events(1, Duration::from_millis(patience))
                .is_empty();
            let case = format!("saved {saved:?}, env {env:?}: {report}");
            assert_eq!(report["enabled"], sent, "{case}");
            let decided = report["decided_by"].as_str().unwrap();
            let expected_source = if env.iter().any(|(k, _)| *k == "DO_NOT_TRACK") {
                "DO_NOT_TRACK=1"
            } else if let Some((_, v)) = env.first() {
                if *v == "false" {
                    "ANONYMIZED_TELEMETRY=false"
                } else {
                    "ANONYMIZED_TELEMETRY=true"
                }
            } else if saved.is_some() {
                "saved preference"
            } else {
                "default"
            };
            assert!(decided.contains(expected_source), "{case}");
        }
    }
}

#[test]
fn disable_sends_nothing_and_discards_what_waits() {
    let home = tempfile::tempdir().unwrap();
    let hung = TestServer::start(Vec::new(), test_server::Reply::Hang);
    let hung_url = hung.url();
    cli(
        home.path(),
        &[
            "--host",
            &hung_url,
            "--api-key",
            KEY,
            "capture",
            "queued",
            "--no-background",
        ],
        &[],
    );
    assert_eq!(status(home.path(), &[])["spool"]["events_waiting"], 1);
    let connections = hung.connections();

    let out = cli(
        home.path(),
        &[
            "--host",
            &hung_url,
            "--api-key",
            KEY,
            "telemetry",
            "disable",
        ],
        &[],
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("telemetry disabled for consent-app"),
        "{text}"
    );
    assert!(text.contains("1 waiting event(s) discarded"), "{text}");
    assert_eq!(hung.connections(), connections, "no farewell event");
    let report = status(home.path(), &[]);
    assert_eq!(report["enabled"], false);
    assert_eq!(report["decided_by"], "disabled (saved preference)");
    assert_eq!(report["spool"]["events_waiting"], 0);

    assert!(
        cli(home.path(), &["telemetry", "enable"], &[])
            .status
            .success()
    );
    assert_eq!(status(home.path(), &[])["enabled"], true);
}

#[test]
fn a_preference_that_cannot_be_saved_is_reported() {
    let home = tempfile::tempdir().unwrap();
    // A folder where the file should be.
    std::fs::create_dir_all(preference(home.path())).unwrap();
    let out = cli(home.path(), &["telemetry", "disable"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the preference could not be saved"), "{err}");
    // An unreadable preference keeps telemetry off rather than ignoring the user.
    let report = status(home.path(), &[]);
    assert_eq!(report["enabled"], false);
    assert_eq!(
        report["decided_by"],
        "disabled (the saved preference file is unreadable)"
    );

    // A file where the config folder should be.
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".config"), "not a folder").unwrap();
    let out = cli(home.path(), &["telemetry", "disable"], &[]);
    assert!(!out.status.success());
}

#[test]
fn a_corrupt_preference_keeps_telemetry_off_until_rewritten() {
    let server = TestServer::ok();
    let url = server.url();
    let home = tempfile::tempdir().unwrap();
    let path = preference(home.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A hand-edited opt-out with a trailing comma: not valid JSON.
    let broken = "{\n \"enabled\": false,\n}\n";
    std::fs::write(&path, broken).unwrap();
    let report = status(home.path(), &[]);
    assert_eq!(report["enabled"], false);
    assert_eq!(
        report["decided_by"],
        "disabled (the saved preference file is unreadable)"
    );
    let out = cli(
        home.path(),
        &["--host", &url, "--api-key", KEY, "capture", "e"],
        &[],
    );
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.connections(), 0, "nothing sent");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        broken,
        "the file is left as it is"
    );

    // An explicit command repairs it.
    assert!(
        cli(home.path(), &["telemetry", "disable"], &[])
            .status
            .success()
    );
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(saved["enabled"], false);
    assert!(
        cli(home.path(), &["telemetry", "enable"], &[])
            .status
            .success()
    );
    assert_eq!(
        status(home.path(), &[])["decided_by"],
        "enabled (saved preference)"
    );
}

#[test]
fn the_notice_is_shown_once_on_stderr_and_stdout_never_changes() {
    let server = TestServer::ok();
    let url = server.url();
    let args = [
        "--host",
        url.as_str(),
        "--api-key",
        KEY,
        "capture",
        "noticed",
    ];
    let off_home = tempfile::tempdir().unwrap();
    let off = cli(off_home.path(), &args, &[("DO_NOT_TRACK", "1")]);
    assert!(off.stderr.is_empty(), "no notice when disabled");

    let home = tempfile::tempdir().unwrap();
    let first = cli(home.path(), &args, &[]);
    let second = cli(home.path(), &args, &[]);
    assert_eq!(
        first.stdout, off.stdout,
        "stdout byte-identical with the notice"
    );
    assert_eq!(second.stdout, off.stdout);
    let notice = String::from_utf8_lossy(&first.stderr);
    assert!(
        notice.contains("consent-app: anonymous usage data"),
        "{notice}"
    );
    assert!(
        notice.contains("product-telemetry --app consent-app telemetry disable"),
        "{notice}"
    );
    assert!(notice.contains("DO_NOT_TRACK=1"), "{notice}");
    assert!(second.stderr.is_empty(), "shown once");
    assert_eq!(server.wait_for_events(2, Duration::from_secs(10)).len(), 2);
}

#[test]
fn reset_id_forgets_the_id_and_log_shows_what_was_sent() {
    let server = TestServer::ok();
    let url = server.url();
    let home = tempfile::tempdir().unwrap();
    let first_id = String::from_utf8(cli(home.path(), &["user-id"], &[]).stdout).unwrap();
    cli(
        home.path(),
        &[
            "--host",
            &url,
            "--api-key",
            KEY,
            "capture",
            "logged",
            "--prop",
            "k=v",
        ],
        &[],
    );
    server.wait_for_events(1, Duration::from_secs(10));
    let mut log = String::new();
    for _ in 0..50 {
        log = String::from_utf8(cli(home.path(), &["telemetry", "log"], &[]).stdout).unwrap();
        if log.contains("\"logged\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let line: serde_json::Value = serde_json::from_str(log.trim()).expect(&log);
    assert_eq!(
        line,
        server.events()[0],
        "the log holds exactly what was sent"
    );

    assert!(
        cli(home.path(), &["telemetry", "reset-id"], &[])
            .status
            .success()
    );
    let second_id = String::from_utf8(cli(home.path(), &["user-id"], &[]).stdout).unwrap();
    assert_ne!(first_id, second_id);
}

#[test]
fn dry_run_prints_the_payload_and_opens_no_connection() {
    let server = TestServer::ok();
    let url = server.url();
    let home = tempfile::tempdir().unwrap();
    let out = cli(
        home.path(),
        &[
            "--host",
            &url,
            "--api-key",
            KEY,
            "capture",
            "rehearsal",
            "--prop",
            "k=v",
        ],
        &[("PRODUCT_TELEMETRY_DRY_RUN", "1")],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let body = err
        .lines()
        .find(|l| l.starts_with("{\"api_key\""))
        .unwrap_or_else(|| panic!("payload on stderr: {err}"));
    let payload: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["api_key"], KEY);
    assert_eq!(payload["batch"][0]["event"], "rehearsal");
    assert_eq!(payload["batch"][0]["properties"]["k"], "v");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.connections(), 0);
}
