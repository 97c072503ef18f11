//! The PostgreSQL write workload: K writers insert unique ids in autocommit through one
//! address (the VIP) with short timeouts, reconnecting after every failure, and record each
//! acknowledged id with its time and the server that acknowledged it.

use crate::FaultError;
use kbz_core::Secret;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The table the workload writes to (dropped and created again by [`prepare`]).
pub const TABLE: &str = "kbz_faults_writes";

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// The address writes go to (the PostgreSQL VIP).
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// User (the superuser `postgres` by default).
    pub user: String,
    /// Its password (never printed).
    pub password: Secret,
    /// Database.
    pub dbname: String,
    /// Connect and statement timeout.
    pub timeout: Duration,
}

impl PgTarget {
    /// The same target at another address (a member, for the read-back).
    pub fn at(&self, addr: IpAddr) -> PgTarget {
        PgTarget {
            addr,
            ..self.clone()
        }
    }

    fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(self.addr.to_string())
            .port(self.port)
            .user(&self.user)
            .password(self.password.expose())
            .dbname(&self.dbname)
            .application_name("kbz-faults")
            .connect_timeout(self.timeout)
            .keepalives_idle(Duration::from_secs(5));
        c
    }

    fn err(&self, e: impl std::fmt::Display) -> FaultError {
        FaultError::Postgres {
            addr: format!("{}:{}", self.addr, self.port),
            reason: e.to_string(),
        }
    }

    /// A connection, its driver task spawned on the current runtime.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, FaultError> {
        let config = self.config();
        let (client, conn) =
            tokio::time::timeout(self.timeout, config.connect(tokio_postgres::NoTls))
                .await
                .map_err(|_| self.err("connect timed out"))?
                .map_err(|e| self.err(describe(&e)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

/// A tokio-postgres error with its database message when there is one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            if let Some(src) = std::error::Error::source(e) {
                s = format!("{s}: {src}");
            }
            s
        }
    }
}

/// Drops and creates the workload table through `t`.
pub async fn prepare(t: &PgTarget) -> Result<(), FaultError> {
    let c = t.connect().await?;
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {TABLE}; \
         CREATE TABLE {TABLE} (id bigint PRIMARY KEY, writer int NOT NULL, at timestamptz NOT NULL DEFAULT now())"
    ))
    .await
    .map_err(|e| t.err(describe(&e)))
}

/// Drops the workload table through `t` (the end of every kbz-failover run).
pub async fn drop_table(t: &PgTarget) -> Result<(), FaultError> {
    let c = t.connect().await?;
    c.batch_execute(&format!("DROP TABLE IF EXISTS {TABLE}"))
        .await
        .map_err(|e| t.err(describe(&e)))
}

/// One acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Ack {
    /// The id.
    pub id: i64,
    /// Seconds since the workload started when the acknowledgement arrived.
    pub at: f64,
    /// The server that acknowledged it (`inet_server_addr()`).
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
    /// Starts `writers` writers against `t`.
    pub fn start(t: &PgTarget, writers: usize) -> Workload {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let next = Arc::new(AtomicI64::new(1));
        let tasks = (0..writers.max(1))
            .map(|w| {
                let (t, stop, tally, next) = (t.clone(), stop.clone(), tally.clone(), next.clone());
                tokio::spawn(writer(w as i32, t, started, stop, tally, next))
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
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        let mut t = self.tally.lock().map(|t| t.clone()).unwrap_or_default();
        t.acks.sort_by(|a, b| a.at.total_cmp(&b.at));
        t
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(120).collect()
}

async fn writer(
    w: i32,
    t: PgTarget,
    started: Instant,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    next: Arc<AtomicI64>,
) {
    let sql = format!(
        "INSERT INTO {TABLE} (id, writer) VALUES ($1, $2) RETURNING inet_server_addr()::text"
    );
    let mut client: Option<tokio_postgres::Client> = None;
    let note = |tally: &Mutex<Tally>, e: String| {
        if let Ok(mut t) = tally.lock() {
            *t.errors.entry(first_line(&e)).or_default() += 1;
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let c = match client.take() {
            Some(c) => c,
            None => match t.connect().await {
                Ok(c) => c,
                Err(e) => {
                    note(&tally, e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let id = next.fetch_add(1, Ordering::SeqCst);
        match tokio::time::timeout(t.timeout, c.query_one(&sql, &[&id, &w])).await {
            Ok(Ok(row)) => {
                let server = row
                    .try_get::<_, Option<String>>(0)
                    .ok()
                    .flatten()
                    .and_then(|s| s.split('/').next().and_then(|a| a.parse().ok()));
                if let Ok(mut tl) = tally.lock() {
                    tl.acks.push(Ack {
                        id,
                        at: started.elapsed().as_secs_f64(),
                        server,
                    });
                }
                client = Some(c);
            }
            Ok(Err(e)) => {
                if let Ok(mut tl) = tally.lock() {
                    tl.attempted_unacked.push(id);
                }
                note(&tally, describe(&e));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {
                if let Ok(mut tl) = tally.lock() {
                    tl.attempted_unacked.push(id);
                }
                note(&tally, "statement timed out".into());
            }
        }
    }
}

/// Every id in the workload table at `t` (a member's own copy when `t` is a member).
pub async fn read_ids(t: &PgTarget) -> Result<Vec<i64>, FaultError> {
    let c = t.connect().await?;
    let rows = tokio::time::timeout(
        Duration::from_secs(60),
        c.query(&format!("SELECT id FROM {TABLE}"), &[]),
    )
    .await
    .map_err(|_| t.err("reading the workload table timed out"))?
    .map_err(|e| t.err(describe(&e)))?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
}

/// The primary's current WAL position through `t` (the VIP), as PostgreSQL prints it
/// (`0/3000148`).
pub async fn primary_lsn(t: &PgTarget) -> Result<String, FaultError> {
    let c = t.connect().await?;
    let row = tokio::time::timeout(
        t.timeout,
        c.query_one("SELECT pg_current_wal_lsn()::text", &[]),
    )
    .await
    .map_err(|_| t.err("reading the WAL position timed out"))?
    .map_err(|e| t.err(describe(&e)))?;
    let lsn: String = row.try_get(0).map_err(|e| t.err(describe(&e)))?;
    if lsn.is_empty() || !lsn.chars().all(|c| c.is_ascii_hexdigit() || c == '/') {
        return Err(t.err(format!("unexpected WAL position {lsn:?}")));
    }
    Ok(lsn)
}

/// Whether the server at `t` has replayed WAL up to `lsn` (a primary always has); `None`
/// when it does not answer. `lsn` comes from [`primary_lsn`].
pub async fn replayed(t: &PgTarget, lsn: &str) -> Option<bool> {
    if !lsn.chars().all(|c| c.is_ascii_hexdigit() || c == '/') {
        return None;
    }
    let c = t.connect().await.ok()?;
    let sql = format!(
        "SELECT NOT pg_is_in_recovery() OR COALESCE(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)"
    );
    tokio::time::timeout(t.timeout, c.query_one(&sql, &[]))
        .await
        .ok()?
        .ok()?
        .try_get::<_, bool>(0)
        .ok()
}

/// Whether the server at `t` runs as a primary (`NOT pg_is_in_recovery()`); `None` when it
/// does not answer within the timeout.
pub async fn is_primary(t: &PgTarget) -> Option<bool> {
    let c = t.connect().await.ok()?;
    tokio::time::timeout(
        t.timeout,
        c.query_one("SELECT NOT pg_is_in_recovery()", &[]),
    )
    .await
    .ok()?
    .ok()?
    .try_get::<_, bool>(0)
    .ok()
}
