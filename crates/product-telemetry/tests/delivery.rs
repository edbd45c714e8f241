//! Delivery against a scripted loopback server: retries, backoff, 413, 401, and the
//! bounds of flush and shutdown when the endpoint hangs.

use std::time::{Duration, Instant};

use product_telemetry::{Client, ClientBuilder, DynamicEvent, Error};
use test_server::{Reply, TestServer};

const WAIT: Duration = Duration::from_secs(10);

fn client(server: &TestServer) -> ClientBuilder {
    Client::builder("phc_test_placeholder_key")
        .host(server.url())
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
}

fn capture_n(client: &Client, n: usize) {
    for i in 0..n {
        client.capture("user", DynamicEvent::new("e").property("i", i));
    }
}

#[test]
fn retry_keeps_uuid_and_timestamp_and_delivers_once() {
    let server = TestServer::start(
        vec![Reply::status(500), Reply::status(503), Reply::Reset],
        Reply::status(200),
    );
    let client = client(&server).build().unwrap();
    capture_n(&client, 3);
    client.flush(WAIT).expect("delivered after retries");
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    let first = requests[0].events();
    for request in &requests[1..] {
        let events = request.events();
        assert_eq!(events.len(), 3);
        for (a, b) in first.iter().zip(&events) {
            assert_eq!(a["uuid"], b["uuid"]);
            assert_eq!(a["timestamp"], b["timestamp"]);
        }
    }
    let stats = client.stats();
    assert_eq!((stats.sent, stats.requests, stats.retries), (3, 4, 3));
    assert_eq!(stats.dropped(), 0);
}

#[test]
fn retry_honours_retry_after() {
    let server = TestServer::start(
        vec![Reply::with_header(429, "Retry-After", "1")],
        Reply::status(200),
    );
    let client = client(&server).build().unwrap();
    capture_n(&client, 1);
    client.flush(WAIT).expect("delivered");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].received - requests[0].received;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

#[test]
fn retry_after_is_clamped_to_the_configured_maximum() {
    let server = TestServer::start(
        vec![Reply::with_header(503, "Retry-After", "3600")],
        Reply::status(200),
    );
    let client = client(&server)
        .max_retry_after(Duration::from_millis(100))
        .build()
        .unwrap();
    capture_n(&client, 1);
    client.flush(WAIT).expect("delivered long before an hour");
    assert_eq!(client.stats().sent, 1);
}

#[test]
fn retries_stop_after_max_retries() {
    let server = TestServer::start(Vec::new(), Reply::status(503));
    let client = client(&server).max_retries(2).build().unwrap();
    capture_n(&client, 2);
    let result = client.flush(WAIT);
    assert!(
        matches!(result, Err(Error::Undelivered { undelivered: 2 })),
        "{result:?}"
    );
    assert_eq!(server.requests().len(), 3);
    assert_eq!(client.stats().dropped_undeliverable, 2);
}

#[test]
fn client_errors_are_not_retried() {
    for status in [400, 404, 422] {
        let server = TestServer::start(vec![Reply::status(status)], Reply::status(200));
        let client = client(&server).build().unwrap();
        capture_n(&client, 2);
        assert!(client.flush(WAIT).is_err());
        assert_eq!(server.requests().len(), 1, "{status}");
        assert_eq!(client.stats().dropped_rejected, 2);
        // The next batch goes through normally.
        capture_n(&client, 1);
        client.flush(WAIT).expect("later batch delivered");
        assert_eq!(client.stats().sent, 1);
    }
}

#[test]
fn payload_too_large_halves_the_batch_until_it_fits() {
    // 8 events: 413 for the batch of 8, then for the first 4, then fine.
    let server = TestServer::start(
        vec![Reply::status(413), Reply::status(413)],
        Reply::status(200),
    );
    let client = client(&server).build().unwrap();
    capture_n(&client, 8);
    client
        .flush(WAIT)
        .expect("all delivered in smaller batches");
    let sizes: Vec<usize> = server.requests().iter().map(|r| r.events().len()).collect();
    // The 8 are refused, then a smaller part (halves of what arrived together), then
    // every part fits.
    assert_eq!(sizes[0], 8, "{sizes:?}");
    assert!(sizes[1] < 8, "{sizes:?}");
    assert!(sizes[2..].iter().all(|&n| n < 8), "{sizes:?}");
    assert_eq!(sizes[2..].iter().sum::<usize>(), 8, "{sizes:?}");
    let delivered: Vec<i64> = server.requests()[2..]
        .iter()
        .flat_map(|r| r.events())
        .map(|e| e["properties"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(delivered, (0..8).collect::<Vec<_>>());
    assert_eq!(client.stats().sent, 8);
}

#[test]
fn a_single_event_refused_as_too_large_is_dropped() {
    let server = TestServer::start(vec![Reply::status(413)], Reply::status(200));
    let client = client(&server).build().unwrap();
    capture_n(&client, 1);
    assert!(client.flush(WAIT).is_err());
    assert_eq!(server.requests().len(), 1);
    assert_eq!(client.stats().dropped_rejected, 1);
}

#[test]
fn unauthorized_stops_sending_for_the_rest_of_the_run() {
    for status in [401, 403] {
        let server = TestServer::start(vec![Reply::status(status)], Reply::status(200));
        let client = client(&server).build().unwrap();
        capture_n(&client, 1);
        assert!(client.flush(WAIT).is_err());
        capture_n(&client, 5);
        assert!(client.flush(WAIT).is_err());
        assert_eq!(server.requests().len(), 1, "no request after {status}");
        assert_eq!(client.stats().dropped_rejected, 6);
    }
}

#[test]
fn flush_returns_within_its_timeout_when_the_endpoint_hangs() {
    let server = TestServer::start(Vec::new(), Reply::Hang);
    let client = client(&server).build().unwrap();
    capture_n(&client, 3);
    let start = Instant::now();
    let result = client.flush(Duration::from_millis(300));
    let took = start.elapsed();
    assert!(result.is_err());
    assert!(took < Duration::from_secs(2), "flush took {took:?}");
    assert_eq!(
        server.wait_for_requests(1, WAIT).len(),
        1,
        "the request was made"
    );
}

#[test]
fn shutdown_returns_within_its_timeout_when_the_endpoint_hangs() {
    let server = TestServer::start(Vec::new(), Reply::Hang);
    let client = client(&server).build().unwrap();
    capture_n(&client, 3);
    let start = Instant::now();
    let result = client.shutdown(Duration::from_millis(300));
    let took = start.elapsed();
    assert!(result.is_err(), "{result:?}");
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    // The worker gave up at the deadline and counted what it could not deliver.
    let deadline = Instant::now() + WAIT;
    while client.stats().dropped_at_shutdown < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(client.stats().dropped_at_shutdown, 3);
}

#[test]
fn shutdown_is_bounded_against_a_closed_port() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Client::builder("phc_test_placeholder_key")
        .host(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    capture_n(&client, 3);
    let start = Instant::now();
    assert!(client.shutdown(Duration::from_millis(300)).is_err());
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn events_after_shutdown_are_counted_not_sent() {
    let server = TestServer::ok();
    let client = client(&server).build().unwrap();
    capture_n(&client, 2);
    client.shutdown(WAIT).expect("clean shutdown");
    capture_n(&client, 3);
    assert_eq!(client.stats().sent, 2);
    assert_eq!(client.stats().dropped_after_shutdown, 3);
    assert!(
        client.shutdown(WAIT).is_ok(),
        "a second shutdown returns at once"
    );
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let server = TestServer::start(Vec::new(), Reply::Hang);
    let client = client(&server)
        .max_queue_events(50)
        .flush_at(10)
        .request_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    capture_n(&client, 10);
    server.wait_for_requests(1, WAIT); // the worker is now stuck in a request
    capture_n(&client, 1000);
    let stats = client.stats();
    assert_eq!(stats.captured, 1010);
    assert!(stats.dropped_queue_full >= 1000 - 50, "{stats:?}");
}

#[test]
fn queue_is_bounded_in_bytes_too() {
    let server = TestServer::start(Vec::new(), Reply::Hang);
    let client = client(&server)
        .max_queue_bytes(64 * 1024)
        .request_timeout(Duration::from_secs(30))
        .flush_at(1)
        .build()
        .unwrap();
    client.capture("user", DynamicEvent::new("first"));
    server.wait_for_requests(1, WAIT);
    for _ in 0..100 {
        client.capture(
            "user",
            DynamicEvent::new("e").property("blob", "x".repeat(8 * 1024)),
        );
    }
    let stats = client.stats();
    // 64 KiB hold at most 8 events of 8 KiB.
    assert!(stats.dropped_queue_full >= 90, "{stats:?}");
}

#[test]
fn capture_works_from_inside_a_tokio_runtime() {
    let server = TestServer::ok();
    let client = client(&server).build().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let client = client.clone();
                tokio::spawn(async move {
                    for i in 0..25 {
                        client
                            .capture(format!("task-{t}"), DynamicEvent::new("e").property("i", i));
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    client.flush(WAIT).expect("delivered");
    assert_eq!(server.events().len(), 100);
}

#[test]
fn messages_keep_an_explicit_uuid_and_timestamp() {
    let server = TestServer::ok();
    let client = client(&server).build().unwrap();
    let uuid = uuid::Uuid::now_v7();
    let when = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    client.enqueue(
        product_telemetry::Message::new("someone", DynamicEvent::new("imported"))
            .uuid(uuid)
            .timestamp(when),
    );
    client.flush(WAIT).unwrap();
    let event = &server.events()[0];
    assert_eq!(event["uuid"], uuid.to_string());
    assert_eq!(event["timestamp"], "2023-11-14T22:13:20.000Z");
    assert_eq!(event["distinct_id"], "someone");
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let result = Client::builder("phc_x").host("http://example.com").build();
    assert!(matches!(result, Err(Error::InvalidHost { .. })));
    let result = Client::builder("phx_personal")
        .host("https://example.com")
        .build();
    assert!(matches!(result, Err(Error::InvalidApiKey(_))));
}
