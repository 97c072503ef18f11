//! A real HTTP server on 127.0.0.1 (axum, on its own thread and runtime) that records every
//! request and answers as a test script says: 200, an error status, 429 with `Retry-After`,
//! or never.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Recorded {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status and body.
    Status(u16, &'static str),
    /// 429 with `Retry-After: secs`.
    RetryAfter(u64),
    /// A status whose body repeats the request path (as some services do in errors).
    EchoPath(u16),
    /// Never answer.
    Hang,
}

type Script = Arc<dyn Fn(usize, &Recorded) -> Reply + Send + Sync>;

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    script: Script,
}

/// A running receiver; stopped when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// Starts a receiver answering request `n` (0-based) with `script(n, &request)`.
    pub fn start(script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static) -> Receiver {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            script: Arc::new(script),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let state = Arc::clone(&shared);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1:0");
                addr_tx
                    .send(listener.local_addr().expect("local addr"))
                    .expect("send addr");
                let app = Router::new().fallback(handle).with_state(state);
                tokio::select! {
                    r = axum::serve(listener, app) => r.expect("serve"),
                    _ = stop_rx => {}
                }
            });
            // Hanging handlers are dropped with the runtime.
            rt.shutdown_background();
        });
        let addr = addr_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("receiver started");
        Receiver {
            addr,
            shared,
            stop: Some(stop_tx),
        }
    }

    /// Always 200 with a Telegram-like `{"ok":true}` body.
    pub fn ok() -> Receiver {
        Receiver::start(|_, _| Reply::Status(200, r#"{"ok":true}"#))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (n, recorded) = {
        let mut reqs = shared.requests.lock().expect("lock");
        reqs.push(Recorded {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        (reqs.len() - 1, reqs[reqs.len() - 1].clone())
    };
    let path = uri.path().to_string();
    match (shared.script)(n, &recorded) {
        Reply::EchoPath(code) => (
            StatusCode::from_u16(code).expect("status"),
            format!("no such hook: {path}"),
        )
            .into_response(),
        Reply::Status(code, body) => (
            StatusCode::from_u16(code).expect("status"),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        Reply::RetryAfter(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response(),
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}
