//! `kbz-health serve --listen ADDR`: a small HTTP server answering `GET /metrics` with a
//! fresh health run in the Prometheus text format (`/` names the endpoint, anything else is
//! 404). Requests are served one at a time, so scrapes never run health checks in parallel.

use kbz_errors::{Code, Diagnostic};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::{exit, Failure};

/// A running metrics server.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// Listens on `listen` (`127.0.0.1:9478`, port 0 for any) and answers `/metrics` with
    /// what `metrics` returns at the time of each request.
    pub fn start(
        listen: &str,
        metrics: impl Fn() -> String + Send + 'static,
    ) -> Result<Self, Failure> {
        let server = tiny_http::Server::http(listen).map_err(|e| {
            Failure::new(
                Diagnostic::new(Code::E010, format!("cannot listen on {listen}: {e}"))
                    .hint("pass a free local address, e.g. --listen 127.0.0.1:9478"),
                exit::INPUT,
            )
        })?;
        let addr = server.server_addr().to_ip().ok_or_else(|| {
            Failure::new(
                Diagnostic::new(Code::E010, "not an IP listener"),
                exit::INPUT,
            )
        })?;
        let server = Arc::new(server);
        let s = server.clone();
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let url = req.url().split('?').next().unwrap_or("").to_string();
                let resp = match (req.method(), url.as_str()) {
                    (tiny_http::Method::Get, "/metrics") => {
                        text(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
                    }
                    (tiny_http::Method::Get, "/") => text(
                        200,
                        "kbz-health: metrics at /metrics\n".into(),
                        "text/plain; charset=utf-8",
                    ),
                    _ => text(
                        404,
                        "not found: try /metrics\n".into(),
                        "text/plain; charset=utf-8",
                    ),
                };
                if let Err(e) = req.respond(resp) {
                    tracing::warn!(error = %e, "metrics response failed");
                }
            }
        });
        Ok(MetricsServer {
            server,
            addr,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops listening and waits for the serving thread.
    pub fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn text(
    status: u16,
    body: String,
    content_type: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut r = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        r.add_header(h);
    }
    r
}
