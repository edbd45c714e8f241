//! The compliance adapter: `product-telemetry`'s PostHog [`Client`] behind the HTTP
//! adapter protocol of PostHog's SDK test harness (`posthog-sdk-test-harness`).
//!
//! The harness starts a mock PostHog server, then drives an SDK through a small HTTP
//! API ("the adapter") and checks what reaches the mock server. This binary is that
//! adapter for our client layer, tested as a **server**-type SDK (it posts
//! `{"api_key", "batch": [...]}` to `/batch/`). See `docs/compliance.md` for how to
//! run the harness against it and the latest result.
//!
//! # Endpoints
//!
//! | endpoint | what it does |
//! | --- | --- |
//! | `GET /health` | name, versions, capabilities `capture_v0` and `encoding_gzip` |
//! | `POST /init` | builds a new [`Client`] (`api_key`, `host`, `flush_at`, `flush_interval_ms`, `max_retries`, `enable_compression`) |
//! | `POST /capture` | enqueues one event with a fresh UUID v7 and returns that uuid |
//! | `POST /flush` | [`Client::flush`], bounded by `--flush-timeout-ms` |
//! | `GET /state` | counters from [`Client::stats`] and every HTTP attempt seen by the transport |
//! | `POST /reset` | drops the client and everything it still holds |
//!
//! `/capture_ai` and `/get_feature_flag` answer `501`: the library has neither, and
//! the adapter does not advertise them. The adapter keeps one SDK instance, so it does
//! not declare `supports_parallel`: parallel runs need an `X-Test-Id` header on every
//! request to the mock server, and the library's HTTP transport has no hook for extra
//! headers. A `test_id` query parameter, if one is sent anyway, is ignored.
//!
//! # Design
//!
//! - **HTTP server:** [`tiny_http`], a small blocking server, served by a few threads.
//!   The library is blocking too (its `flush` waits on the worker), so handlers call
//!   it directly; an async stack (axum + tokio, which the collector uses) would only
//!   add `spawn_blocking` glue around every call.
//! - **Request recording:** a [`Transport`](product_telemetry::transport::Transport)
//!   wrapping the library's real `HttpTransport` records each attempt (status, retry
//!   number, uuids) for `/state`; see [`recorder`].
//! - **Robustness:** handlers never panic on input; bad requests get `400` with a JSON
//!   `{"success": false, "error": ...}` body, internal failures `500`.
//! - **Loopback only:** the adapter listens on a loopback address and refuses others.
//!
//! # Usage
//!
//! ```text
//! cargo run -p compliance-adapter -- --listen 127.0.0.1:8080
//! PORT=8080 cargo run -p compliance-adapter
//! ```
//!
//! The first line on stdout is `compliance-adapter listening on http://ADDR`, with the
//! real port when `:0` was asked for.
//!
//! [`Client`]: product_telemetry::Client
//! [`Client::flush`]: product_telemetry::Client::flush
//! [`Client::stats`]: product_telemetry::Client::stats

mod adapter;
mod protocol;
mod recorder;
mod server;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use adapter::Adapter;

const USAGE: &str = "\
compliance-adapter: product-telemetry behind the PostHog SDK test harness's adapter protocol

USAGE:
    compliance-adapter [--listen ADDR] [--flush-timeout-ms MS] [--threads N]

OPTIONS:
    --listen ADDR          loopback address to listen on (default 127.0.0.1:$PORT,
                           PORT defaulting to 8080; use port 0 for any free port)
    --flush-timeout-ms MS  longest a /flush waits for delivery (default 10000)
    --threads N            request-handling threads (default 4)
    -h, --help             print this help
";

/// Command-line settings.
#[derive(Debug, PartialEq)]
struct Args {
    listen: SocketAddr,
    flush_timeout: Duration,
    threads: usize,
}

fn parse_args(
    mut args: impl Iterator<Item = String>,
    port_env: Option<String>,
) -> Result<Option<Args>, String> {
    let default_port = match port_env {
        Some(port) => port
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("PORT={port:?} is not a port number"))?,
        None => 8080,
    };
    let mut parsed = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], default_port)),
        flush_timeout: Duration::from_secs(10),
        threads: 4,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        match flag.as_str() {
            "--listen" => {
                parsed.listen = value
                    .parse()
                    .map_err(|_| format!("--listen {value:?} is not an IP:PORT address"))?;
            }
            "--flush-timeout-ms" => {
                let ms: u64 = value
                    .parse()
                    .map_err(|_| format!("--flush-timeout-ms {value:?} is not a number"))?;
                parsed.flush_timeout = Duration::from_millis(ms);
            }
            "--threads" => {
                parsed.threads = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| format!("--threads {value:?} must be 1 to 64"))?;
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if !parsed.listen.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {}: the adapter only listens on loopback addresses",
            parsed.listen
        ));
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1), std::env::var("PORT").ok()) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("compliance-adapter: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let adapter = Adapter::new(args.flush_timeout);
    match server::serve(args.listen, args.threads, adapter) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("compliance-adapter: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], port: Option<&str>) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()), port.map(str::to_string))
    }

    #[test]
    fn defaults_and_port_env() {
        let args = parse(&[], None).unwrap().unwrap();
        assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(args.flush_timeout, Duration::from_secs(10));
        let args = parse(&[], Some("9000")).unwrap().unwrap();
        assert_eq!(args.listen, "127.0.0.1:9000".parse().unwrap());
        assert!(parse(&[], Some("nope")).is_err());
    }

    #[test]
    fn flags() {
        let args = parse(
            &[
                "--listen",
                "127.0.0.1:0",
                "--flush-timeout-ms=250",
                "--threads",
                "2",
            ],
            Some("9000"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(args.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(args.flush_timeout, Duration::from_millis(250));
        assert_eq!(args.threads, 2);
        assert_eq!(parse(&["--help"], None).unwrap(), None);
        assert!(parse(&["--listen"], None).is_err());
        assert!(parse(&["--threads", "0"], None).is_err());
        assert!(parse(&["--bogus", "1"], None).is_err());
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(parse(&["--listen", "0.0.0.0:8080"], None).is_err());
        assert!(parse(&["--listen", "[::1]:8080"], None).is_ok());
    }
}
