//! Nothing captured is lost: offline runs, crashes (SIGKILL at random moments),
//! corrupt spool files, bounds, and several processes sharing one spool.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use end_to_end::{
    child, closed_port_url, collector, config, random_below, spool_dir, spooled_files,
};
use product_telemetry::{DynamicEvent, ProductTelemetry};
use product_telemetry_collector::{EventFilter, Store};
use test_server::{Reply, TestServer};

const WAIT: Duration = Duration::from_secs(20);

fn stored_seqs(db: &Path) -> Vec<String> {
    let store = Store::open(db).unwrap();
    store
        .events(&EventFilter::all())
        .unwrap()
        .into_iter()
        .map(|e| e.properties["seq"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn recover(home: &Path, host: &str) -> ProductTelemetry {
    let telemetry = ProductTelemetry::new(
        config(home, host).client_options(|c| c.honour_remembered_backoff(false)),
    );
    let _ = telemetry.shutdown(WAIT);
    telemetry
}

#[test]
fn offline_then_online_delivers_every_event_exactly_once() {
    let home = tempfile::tempdir().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let offline = ProductTelemetry::new(config(home.path(), &closed_port_url()));
    for i in 0..30 {
        offline.capture(DynamicEvent::new("offline").property("seq", i.to_string()));
    }
    assert!(offline.shutdown(Duration::from_millis(300)).is_err());
    assert_eq!(offline.stats().left_in_spool, 30);
    assert_eq!(offline.stats().dropped(), 0);
    assert!(spooled_files(home.path()) >= 1);

    let collector = collector(db_dir.path());
    let online = ProductTelemetry::new(config(home.path(), &collector.url()));
    online.capture(DynamicEvent::new("online").property("seq", "new"));
    online.shutdown(WAIT).expect("everything delivered");
    assert_eq!(online.stats().recovered, 30);
    assert_eq!(spooled_files(home.path()), 0);
    let db = collector.db_path().to_path_buf();
    collector.shutdown().unwrap();
    let mut seqs = stored_seqs(&db);
    seqs.sort();
    let mut expected: Vec<String> = (0..30).map(|i: i32| i.to_string()).collect();
    expected.push("new".into());
    expected.sort();
    assert_eq!(seqs, expected);
}

#[test]
fn a_remembered_backoff_spares_later_runs_the_timeout() {
    let home = tempfile::tempdir().unwrap();
    let hung = TestServer::start(Vec::new(), Reply::Hang);
    let first = ProductTelemetry::new(config(home.path(), &hung.url()).client_options(|c| {
        c.request_timeout(Duration::from_millis(200))
            .backoff(Duration::from_secs(30), Duration::from_secs(60))
    }));
    first.capture(DynamicEvent::new("e"));
    let _ = first.shutdown(Duration::from_secs(2));
    assert_eq!(hung.requests().len(), 1);
    let summary = product_telemetry::spool::summarize(&spool_dir(home.path()));
    assert!(summary.next_attempt.is_some(), "the failure is remembered");

    let second = ProductTelemetry::new(config(home.path(), &hung.url()));
    second.capture(DynamicEvent::new("e"));
    let start = Instant::now();
    let _ = second.shutdown(Duration::from_secs(2));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "no new timeout paid"
    );
    assert_eq!(
        hung.requests().len(),
        1,
        "no request while the backoff lasts"
    );
    assert_eq!(second.stats().left_in_spool, 2);
}

/// Child of `sigkill_at_random_moments_loses_nothing_durable`.
#[test]
fn sigkill_child() {
    let (Ok(home), Ok(host), Ok(run)) = (
        std::env::var("E2E_HOME"),
        std::env::var("E2E_HOST"),
        std::env::var("E2E_RUN"),
    ) else {
        return;
    };
    let telemetry = ProductTelemetry::new(
        config(Path::new(&home), &host)
            .client_options(|c| c.flush_at(5).request_timeout(Duration::from_millis(300))),
    );
    for i in 0..10_000 {
        telemetry.capture(DynamicEvent::new("soak").property("seq", format!("{run}-{i}")));
        if i % 3 == 2 && telemetry.persist(Duration::from_secs(5)).is_ok() {
            println!("durable {run} {i}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_durable() {
    let home = tempfile::tempdir().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let collector = collector(db_dir.path());
    let hung = TestServer::start(Vec::new(), Reply::Hang);
    let mut durable: HashSet<String> = HashSet::new();
    const RUNS: usize = 50;
    for run in 0..RUNS {
        let host = if run % 4 == 3 {
            hung.url()
        } else {
            collector.url()
        };
        let mut process = child(
            "sigkill_child",
            &[
                ("E2E_HOME", home.path().display().to_string()),
                ("E2E_HOST", host),
                ("E2E_RUN", run.to_string()),
            ],
        );
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = process.stdout.take().unwrap();
        let reader = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(20 + random_below(120)));
        process.kill().unwrap(); // SIGKILL
        process.wait().unwrap();
        reader.join().unwrap();
        for line in lines.lock().unwrap().iter() {
            if let Some(at) = line.find("durable ") {
                let mut words = line[at + "durable ".len()..].split_whitespace();
                let (Some(r), Some(i)) = (words.next(), words.next()) else {
                    continue;
                };
                let last: usize = i.parse().unwrap();
                for j in 0..=last {
                    durable.insert(format!("{r}-{j}"));
                }
            }
        }
    }
    assert!(
        durable.len() > RUNS,
        "the children made progress: {}",
        durable.len()
    );

    let recovery = recover(home.path(), &collector.url());
    assert_eq!(recovery.stats().dropped(), 0, "{:?}", recovery.stats());
    assert_eq!(
        spooled_files(home.path()),
        0,
        "the spool is empty after recovery"
    );
    let db = collector.db_path().to_path_buf();
    collector.shutdown().unwrap();

    let seqs = stored_seqs(&db);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for seq in &seqs {
        *counts.entry(seq.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events stored twice: {twice:?}");
    let missing: Vec<_> = durable
        .iter()
        .filter(|s| !counts.contains_key(s.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} durable events lost: {:?}",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );
}

#[test]
fn corrupt_and_truncated_spool_files_are_removed_and_do_not_block_the_rest() {
    let home = tempfile::tempdir().unwrap();
    // Leave four events behind, in one or more valid segments.
    let offline = ProductTelemetry::new(
        config(home.path(), &closed_port_url()).client_options(|c| c.flush_at(2)),
    );
    for i in 0..4 {
        offline.capture(DynamicEvent::new("kept").property("seq", i.to_string()));
    }
    let _ = offline.shutdown(Duration::from_millis(300));
    let dir = spool_dir(home.path());
    let mut valid: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    valid.sort();
    assert!(!valid.is_empty());
    // A torn copy of a valid segment, garbage, and an empty file, from dead writers.
    let bytes = std::fs::read(&valid[0]).unwrap();
    let name = |n: u8| dir.join(format!("{}-deadbeef{n}.seg", uuid::Uuid::now_v7().simple()));
    std::fs::write(name(1), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(name(2), b"definitely not a segment").unwrap();
    std::fs::write(name(3), b"").unwrap();

    let server = TestServer::ok();
    let recovered = recover(home.path(), &server.url());
    let stats = recovered.stats();
    assert_eq!(stats.spool_corrupt, 3, "{stats:?}");
    assert_eq!(stats.recovered, 4);
    assert_eq!(server.events().len(), 4);
    assert_eq!(spooled_files(home.path()), 0);
    assert_eq!(product_telemetry::spool::summarize(&dir).corrupt, 3);
}

#[test]
fn the_spool_stays_within_its_size_bound() {
    let home = tempfile::tempdir().unwrap();
    let max = 16 * 1024;
    let telemetry = ProductTelemetry::new(
        config(home.path(), &closed_port_url())
            .client_options(move |c| c.flush_at(10).spool_limits(max, Duration::from_secs(3600))),
    );
    for i in 0..2_000 {
        telemetry.capture(
            DynamicEvent::new("filler")
                .property("seq", i.to_string())
                .property("pad", "x".repeat(100)),
        );
    }
    let _ = telemetry.shutdown(Duration::from_millis(500));
    let summary = product_telemetry::spool::summarize(&spool_dir(home.path()));
    assert!(summary.bytes <= max, "{summary:?}");
    assert!(summary.evicted > 0);
    let stats = telemetry.stats();
    assert_eq!(
        stats.dropped_evicted + stats.left_in_spool,
        2_000,
        "{stats:?}"
    );
    let names: Vec<String> = std::fs::read_dir(spool_dir(home.path()))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with(".tmp")),
        "no orphaned temporary files: {names:?}"
    );
}

/// Child of `processes_sharing_a_spool_send_each_event_once`.
#[test]
fn sharing_child() {
    let (Ok(home), Ok(host), Ok(name), Ok(go)) = (
        std::env::var("E2E_HOME"),
        std::env::var("E2E_HOST"),
        std::env::var("E2E_NAME"),
        std::env::var("E2E_GO"),
    ) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Path::new(&go).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let telemetry = ProductTelemetry::new(config(Path::new(&home), &host));
    for i in 0..25 {
        telemetry.capture(DynamicEvent::new("shared").property("seq", format!("{name}-{i}")));
    }
    let _ = telemetry.shutdown(WAIT);
    println!("stats {:?}", telemetry.stats());
}

#[test]
fn processes_sharing_a_spool_send_each_event_once() {
    let home = tempfile::tempdir().unwrap();
    // 40 events left behind by earlier offline runs, in 8 segments.
    for run in 0..2 {
        let offline = ProductTelemetry::new(
            config(home.path(), &closed_port_url()).client_options(|c| c.flush_at(5)),
        );
        for i in 0..20 {
            offline.capture(DynamicEvent::new("shared").property("seq", format!("old{run}-{i}")));
        }
        let _ = offline.shutdown(Duration::from_millis(300));
    }
    // The offline runs remembered a backoff; these processes were started on demand.
    std::fs::remove_file(spool_dir(home.path()).join("next_attempt")).ok();
    let server = TestServer::start(Vec::new(), Reply::status(200));
    let go = home.path().join("go");
    let children: Vec<_> = (0..6)
        .map(|n| {
            child(
                "sharing_child",
                &[
                    ("E2E_HOME", home.path().display().to_string()),
                    ("E2E_HOST", server.url()),
                    ("E2E_NAME", format!("p{n}")),
                    ("E2E_GO", go.display().to_string()),
                ],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, "").unwrap();
    for mut c in children {
        c.wait().unwrap();
    }
    let events = server.events();
    let mut uuids = HashSet::new();
    let mut seqs = HashSet::new();
    for event in &events {
        assert!(
            uuids.insert(event["uuid"].as_str().unwrap().to_string()),
            "uuid sent twice: {event}"
        );
        seqs.insert(event["properties"]["seq"].as_str().unwrap().to_string());
    }
    assert_eq!(events.len(), 40 + 6 * 25, "every event once");
    assert_eq!(seqs.len(), 40 + 6 * 25);
    assert_eq!(spooled_files(home.path()), 0);
}

#[test]
fn an_unwritable_cache_falls_back_to_memory_only_delivery() {
    // /proc refuses new folders even to root: no id file, no spool.
    let home = Path::new("/proc/product-telemetry-e2e");
    let server = TestServer::ok();
    let telemetry = ProductTelemetry::new(config(home, &server.url()));
    assert!(telemetry.is_enabled());
    for i in 0..5 {
        telemetry.capture(DynamicEvent::new("memory_only").property("seq", i.to_string()));
    }
    assert!(
        telemetry.persist(Duration::from_secs(5)).is_err(),
        "events exist in memory only"
    );
    telemetry.shutdown(WAIT).expect("delivered from memory");
    assert_eq!(server.events().len(), 5);
    assert_eq!(telemetry.stats().spooled, 0);
}
