//! The PostgreSQL side of the workload: the scratch table, a [`Writer`] inserting unique ids
//! in autocommit through one address (the VIP) that reconnects after every failure and
//! reports the server that acknowledged, the read-back of a member's own copy and the WAL
//! positions that tell lag from loss.

use crate::workload::{WriteError, Writer};
use crate::FaultError;
use kbz_core::net::Routes;
use kbz_core::Secret;
use std::net::IpAddr;
use std::time::Duration;

/// The table the workload writes to (dropped and created again by [`prepare`]).
pub const TABLE: &str = "kbz_faults_writes";

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// The address writes go to (the PostgreSQL VIP).
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// User: kbz's application role (`[postgres] app_user`); the superuser is refused over
    /// TCP.
    pub user: String,
    /// Its password (never printed).
    pub password: Secret,
    /// Database.
    pub dbname: String,
    /// Connect and statement timeout.
    pub timeout: Duration,
    /// The cluster CA (PEM) when `[security] tls` is on: connections then require TLS and
    /// verify the server's certificate against it (member certificates name the VIP too).
    pub tls_ca: Option<String>,
    /// Where connections to an address really go (a tunnel through the bastion); empty:
    /// directly. The server's certificate is still verified against [`PgTarget::addr`].
    pub routes: Routes,
}

impl PgTarget {
    /// The same target at another address (a member, for the read-back), with the same
    /// routes.
    pub fn at(&self, addr: IpAddr) -> PgTarget {
        PgTarget {
            addr,
            ..self.clone()
        }
    }

    /// The connection settings. Through a route, the socket opened is the route's (`hostaddr`
    /// and its port) while `host` stays the real address, the name TLS verifies.
    fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(self.addr.to_string());
        match self.routes.get(self.addr, self.port) {
            Some(via) => c.hostaddr(via.ip()).port(via.port()),
            None => c.port(self.port),
        };
        c.user(&self.user)
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

    /// A connection, its driver task spawned on the current runtime; over TLS verified
    /// against [`PgTarget::tls_ca`] when it is set.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, FaultError> {
        let mut config = self.config();
        let Some(ca) = &self.tls_ca else {
            let (client, conn) =
                tokio::time::timeout(self.timeout, config.connect(tokio_postgres::NoTls))
                    .await
                    .map_err(|_| self.err("connect timed out"))?
                    .map_err(|e| self.err(describe(&e)))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            return Ok(client);
        };
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config(ca)?);
        let (client, conn) = tokio::time::timeout(self.timeout, config.connect(tls))
            .await
            .map_err(|_| self.err("connect timed out"))?
            .map_err(|e| self.err(describe(&e)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// rustls trusting the cluster CA alone.
    fn tls_config(&self, ca_pem: &str) -> Result<rustls::ClientConfig, FaultError> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| self.err(format!("the cluster CA: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| self.err(format!("the cluster CA: {e}")))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| self.err(e))?
            .with_root_certificates(roots)
            .with_no_client_auth())
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

/// One PostgreSQL writer: its connection, opened again after any failure.
#[derive(Debug)]
pub struct PgWriter {
    t: PgTarget,
    w: i32,
    client: Option<tokio_postgres::Client>,
}

impl PgWriter {
    /// Writer number `w` against `t` (connects on its first write).
    pub fn new(t: &PgTarget, w: usize) -> PgWriter {
        PgWriter {
            t: t.clone(),
            w: w as i32,
            client: None,
        }
    }
}

#[async_trait::async_trait]
impl Writer for PgWriter {
    async fn write(&mut self, id: i64) -> Result<Option<IpAddr>, WriteError> {
        let c = match self.client.take() {
            Some(c) => c,
            None => self
                .t
                .connect()
                .await
                .map_err(|e| WriteError::not_sent(e.to_string()))?,
        };
        let sql = format!(
            "INSERT INTO {TABLE} (id, writer) VALUES ($1, $2) RETURNING inet_server_addr()::text"
        );
        match tokio::time::timeout(self.t.timeout, c.query_one(&sql, &[&id, &self.w])).await {
            Ok(Ok(row)) => {
                let server = row
                    .try_get::<_, Option<String>>(0)
                    .ok()
                    .flatten()
                    .and_then(|s| s.split('/').next().and_then(|a| a.parse().ok()));
                self.client = Some(c);
                Ok(server)
            }
            Ok(Err(e)) => Err(WriteError::sent(describe(&e))),
            Err(_) => Err(WriteError::sent("statement timed out")),
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

#[cfg(test)]
#[path = "postgres/tls_test.rs"]
mod tls_test;
