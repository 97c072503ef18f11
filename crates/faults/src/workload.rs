//! The write workload, the same for every service: K writers, each a service's [`Writer`]
//! (PostgreSQL: INSERT of a unique id in autocommit; Redis: SET of a unique key under the
//! scratch prefix) through one address (the VIP) with short timeouts, reconnecting after
//! every failure. Every acknowledged write is recorded with its time and, where the service
//! says it, the server that acknowledged it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A failed write attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    /// The write reached the server (or may have): its outcome is unknown, so the id may
    /// appear in the read-back without an acknowledgement.
    pub sent: bool,
    /// The error, first line.
    pub message: String,
}

impl WriteError {
    /// The write may have been applied (timeout or error after sending).
    pub fn sent(m: impl Into<String>) -> WriteError {
        WriteError {
            sent: true,
            message: m.into(),
        }
    }

    /// The write never left (no connection).
    pub fn not_sent(m: impl Into<String>) -> WriteError {
        WriteError {
            sent: false,
            message: m.into(),
        }
    }
}

/// One writer of a service: writes the unique `id` and returns once the service
/// acknowledged it (with the server that did, when known). It keeps its own connection and
/// opens a new one after a failure; its own timeouts bound every call.
#[async_trait::async_trait]
pub trait Writer: Send {
    /// Writes `id`.
    async fn write(&mut self, id: i64) -> Result<Option<IpAddr>, WriteError>;
}

/// One acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Ack {
    /// The id.
    pub id: i64,
    /// Seconds since the workload started when the acknowledgement arrived.
    pub at: f64,
    /// The server that acknowledged it (PostgreSQL: `inet_server_addr()`; `None` when the
    /// service does not say).
    pub server: Option<IpAddr>,
}

/// What the writers saw.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Every acknowledged write, in arrival order per writer.
    pub acks: Vec<Ack>,
    /// Ids sent whose outcome is unknown (error or timeout after sending).
    pub attempted_unacked: Vec<i64>,
    /// Failed attempts by first line of the error (counts).
    pub errors: BTreeMap<String, u64>,
}

/// A running workload; [`Workload::stop`] ends it and returns the tally.
#[derive(Debug)]
pub struct Workload {
    started: Instant,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    /// Starts one task per writer of `writers` (numbered from 0).
    pub fn start(writers: Vec<Box<dyn Writer>>) -> Workload {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let next = Arc::new(AtomicI64::new(1));
        let tasks = writers
            .into_iter()
            .map(|w| {
                let (stop, tally, next) = (stop.clone(), tally.clone(), next.clone());
                tokio::spawn(writer(w, started, stop, tally, next))
            })
            .collect();
        Workload {
            started,
            stop,
            tally,
            tasks,
        }
    }

    /// When the workload started (the time base of [`Ack::at`]).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> usize {
        self.tally.lock().map(|t| t.acks.len()).unwrap_or(0)
    }

    /// Stops every writer (each finishes or abandons its statement) and returns the tally.
    pub async fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        let mut t = self.tally.lock().map(|t| t.clone()).unwrap_or_default();
        t.acks.sort_by(|a, b| a.at.total_cmp(&b.at));
        t
    }
}

/// A workload dropped without [`Workload::stop`] (its run was interrupted) stops writing at
/// once: no write may follow the heal and the removal of the scratch data.
impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(120).collect()
}

async fn writer(
    mut w: Box<dyn Writer>,
    started: Instant,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    next: Arc<AtomicI64>,
) {
    while !stop.load(Ordering::SeqCst) {
        let id = next.fetch_add(1, Ordering::SeqCst);
        match w.write(id).await {
            Ok(server) => {
                if let Ok(mut tl) = tally.lock() {
                    tl.acks.push(Ack {
                        id,
                        at: started.elapsed().as_secs_f64(),
                        server,
                    });
                }
            }
            Err(e) => {
                if let Ok(mut tl) = tally.lock() {
                    if e.sent {
                        tl.attempted_unacked.push(id);
                    }
                    *tl.errors.entry(first_line(&e.message)).or_default() += 1;
                }
                let pause = if e.sent { 50 } else { 100 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
}
