//! The HTTP side: a [`tiny_http`] server on a loopback address, a few threads taking
//! requests from it, each request's body read (bounded) and handed to the
//! [`Adapter`], whose [`Reply`] goes back as JSON.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use tiny_http::{Header, Request, Response, Server};

use crate::adapter::{Adapter, Reply};

/// The largest request body read; larger ones get 413.
const MAX_BODY: u64 = 1024 * 1024;

/// Listens on `addr` and serves the adapter until the process ends.
pub(crate) fn serve(addr: SocketAddr, threads: usize, adapter: Adapter) -> io::Result<()> {
    let server =
        Server::http(addr).map_err(|e| io::Error::other(format!("listen on {addr}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| io::Error::other("the server is not on an IP address"))?;
    {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "compliance-adapter listening on http://{bound}")?;
        stdout.flush()?;
    }
    let server = Arc::new(server);
    let adapter = Arc::new(adapter);
    let workers: Vec<_> = (0..threads)
        .map(|n| {
            let server = Arc::clone(&server);
            let adapter = Arc::clone(&adapter);
            std::thread::Builder::new()
                .name(format!("adapter-http-{n}"))
                .spawn(move || {
                    loop {
                        match server.recv() {
                            Ok(request) => respond(&adapter, request),
                            Err(error) => {
                                eprintln!("compliance-adapter: accept failed: {error}");
                                return;
                            }
                        }
                    }
                })
        })
        .collect::<io::Result<_>>()?;
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn respond(adapter: &Adapter, mut request: Request) {
    let method = request.method().as_str().to_ascii_uppercase();
    let path = request
        .url()
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_string();
    let reply = match read_body(&mut request) {
        Ok(body) => adapter.handle(&method, &path, &body),
        Err(reply) => reply,
    };
    if reply.status >= 500 {
        eprintln!(
            "compliance-adapter: {method} {path} -> {}: {}",
            reply.status, reply.body
        );
    }
    let mut response = Response::from_string(reply.body.to_string()).with_status_code(reply.status);
    if let Ok(header) = Header::from_bytes("Content-Type", "application/json") {
        response = response.with_header(header);
    }
    if let Err(error) = request.respond(response) {
        eprintln!("compliance-adapter: could not answer {method} {path}: {error}");
    }
}

fn read_body(request: &mut Request) -> Result<Vec<u8>, Reply> {
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| Reply::error(400, format!("could not read the request body: {e}")))?;
    if body.len() as u64 > MAX_BODY {
        return Err(Reply::error(
            413,
            format!("request body over {MAX_BODY} bytes"),
        ));
    }
    Ok(body)
}
