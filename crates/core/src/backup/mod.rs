//! Backups: the [`Backup`] trait a component implements to take, restore and drill its
//! backups, the [`Manifest`] every backup carries, the [`Repository`] on the `backup`-role
//! host (used over its executor), encryption at rest ([`crypt`]) and [`BackupError`]
//! (E041-E050). kbz-cli's `backup` module (the `kbz-backup` binary) owns the orchestration:
//! it picks the hosts, calls the component, seals and stores the artifact, verifies, prunes,
//! notifies and logs; components own the service knowledge.
//!
//! Two kinds of component fit ([`Storage`]):
//! - [`Storage::Artifact`] (etcd, Redis): `backup` hands over the data as bytes with what
//!   was inside; kbz encrypts it, stores it with its manifest and gives the decrypted,
//!   checked bytes back to `restore` and `drill`.
//! - [`Storage::Managed`] (PostgreSQL with pgBackRest): the tool keeps its own repository
//!   (on the same backup host, its own cipher). `backup` runs it and returns the tool's
//!   label and the size; kbz stores only the manifest, so `list`, `--at` selection and
//!   retention see every component the same way; `verify` and `prune` call the
//!   component's hooks, and `restore`/`drill` get no bytes.

pub mod crypt;
mod error;
pub mod hook;
pub mod manifest;
pub mod repo;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::component::HostExec;
use crate::context::Context;
use crate::inventory::{Host, Inventory, Role};

pub use error::BackupError;
pub use hook::{HookState, RestoreHook};
pub use manifest::{BackupKind, Contents, Manifest, Retention, Stored, Target};
pub use repo::Repository;

/// Who stores a component's backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// kbz stores the artifact `backup` returns, encrypted, next to its manifest.
    Artifact,
    /// The component's tool keeps its own repository; kbz stores the manifest only.
    Managed,
}

/// What a component's backup, restore and drill work with.
#[derive(Debug, Clone, Copy)]
pub struct BackupEnv<'a> {
    /// The session's context (inventory, config, secrets, TLS).
    pub ctx: &'a Context,
    /// The component's hosts (those it applies to), with their executors.
    pub hosts: &'a [HostExec],
    /// The `backup`-role host, where the repository lives and drills run.
    pub backup_host: &'a HostExec,
    /// The repository on the backup host.
    pub repo: &'a Repository,
}

/// What a backup asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRequest {
    /// The backup's id ([`manifest::new_id`]).
    pub id: String,
    /// `--full` / `--diff`; `None`: the component's default (full where it has no other).
    pub kind: Option<BackupKind>,
}

/// The data of an [`Storage::Artifact`] backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The file name it is stored under, without `.age` (`snapshot.db`, `dump.rdb`).
    pub file: String,
    /// The bytes (at most [`repo::MAX_ARTIFACT_BYTES`]).
    pub bytes: Vec<u8>,
}

/// What [`Backup::backup`] took.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// Full or differential.
    pub kind: BackupKind,
    /// Inventory hostname it was taken from.
    pub source_host: String,
    /// The moment the data represents.
    pub time: DateTime<Utc>,
    /// `etcdctl 3.4.23`, `redis-server 7.0.15`, `pgbackrest 2.54`.
    pub tool_version: String,
    /// What was inside (key counts, revision, canary values), checked by drills.
    pub contents: Contents,
    /// The data ([`Storage::Artifact`]); `None` for a managed backup.
    pub artifact: Option<Artifact>,
    /// The tool's own name of the backup ([`Storage::Managed`]).
    pub label: Option<String>,
    /// Size in bytes of a managed backup (an artifact's is its length).
    pub size_bytes: u64,
}

/// What a restore would do, asked before anything changes: the gate of `--force` and
/// what `--dry-run` prints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RestorePlan {
    /// The service is running and healthy now (a restore then needs `--force`).
    pub running: bool,
    /// What it stops, `(host, service)`, in order.
    pub stops: Vec<(String, String)>,
    /// Every step, in order, as a sentence (`db1: stop etcd`).
    pub steps: Vec<String>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Restored {
    /// The service's state afterwards, as checked (`3 members healthy, 12 keys`).
    pub detail: String,
    /// What the restored data holds, for comparison with the manifest.
    pub contents: Contents,
}

/// One comparison of a drill: what the manifest recorded against the scratch copy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Compared {
    /// What (`key_count`, `canary`).
    pub what: String,
    /// The manifest's value.
    pub expected: serde_json::Value,
    /// The scratch instance's value.
    pub got: serde_json::Value,
}

/// What a drill found (the scratch instance is gone afterwards).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Drilled {
    /// The host the scratch instance ran on.
    pub host: String,
    /// Milliseconds from the data in hand to the scratch instance answering.
    pub restore_ms: u64,
    /// Every comparison made; the orchestration fails the drill (E047) on a difference.
    pub compared: Vec<Compared>,
}

/// The backups of one component. Implemented next to the component (kbz-etcd,
/// kbz-redis, kbz-postgres), listed by kbz-stack. Methods get the session's [`BackupEnv`]
/// and never connect by themselves.
#[async_trait]
pub trait Backup: Send + Sync + std::fmt::Debug {
    /// The component's name (`etcd`), as in [`crate::Component::name`].
    fn component(&self) -> &'static str;

    /// Whether kbz stores the artifact or the tool keeps its own repository.
    fn storage(&self) -> Storage {
        Storage::Artifact
    }

    /// Secrets it needs beyond the component's own (pgBackRest's repository cipher).
    fn secret_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether `host` is one of the component's hosts.
    fn applies_to(&self, host: &Host) -> bool;

    /// The components whose health checks must pass after a restore before it counts as
    /// done: the component itself, and those that depend on it (etcd: PostgreSQL, whose
    /// Patroni keeps its state in etcd).
    fn healthy_after(&self) -> Vec<&'static str> {
        vec![self.component()]
    }

    /// Takes a backup from a healthy member (E042 on failure).
    async fn backup(&self, env: &BackupEnv<'_>, req: &BackupRequest) -> Result<Taken, BackupError>;

    /// What restoring `m` (to `at` for point-in-time) would stop and do. Read-only.
    async fn restore_plan(
        &self,
        env: &BackupEnv<'_>,
        m: &Manifest,
        at: Option<DateTime<Utc>>,
    ) -> Result<RestorePlan, BackupError>;

    /// Restores `m` onto the cluster (`artifact`: the decrypted, checked bytes of an
    /// [`Storage::Artifact`] backup) and waits until the service is healthy (E043).
    async fn restore(
        &self,
        env: &BackupEnv<'_>,
        m: &Manifest,
        artifact: Option<&[u8]>,
        at: Option<DateTime<Utc>>,
    ) -> Result<Restored, BackupError>;

    /// Restores `m` into a scratch instance on the backup host that touches nothing of
    /// the cluster, compares it with the manifest, and removes it whatever happened.
    async fn drill(
        &self,
        env: &BackupEnv<'_>,
        m: &Manifest,
        artifact: Option<&[u8]>,
    ) -> Result<Drilled, BackupError>;

    /// Checks the tool's own repository for these backups ([`Storage::Managed`]:
    /// `pgbackrest verify`); kbz checks stored artifacts itself.
    async fn verify(&self, _env: &BackupEnv<'_>, _ms: &[Manifest]) -> Result<(), BackupError> {
        Ok(())
    }

    /// Deletes `keys` from the restored store (a key ending in `/` names every key under
    /// it), for the [`RestoreHook`]s around this component's restore; returns how many
    /// keys went. Only a key-value store has keys: the others refuse (E043).
    async fn drop_keys(&self, env: &BackupEnv<'_>, keys: &[String]) -> Result<u64, BackupError> {
        Err(BackupError::restore(
            self.component(),
            env.hosts
                .first()
                .map(|h| h.host.hostname.as_str())
                .unwrap_or(""),
            format!(
                "{} holds no keys to drop ({} asked)",
                self.component(),
                keys.join(", ")
            ),
        ))
    }

    /// Removes these backups from the tool's own repository ([`Storage::Managed`]:
    /// `pgbackrest expire`), before kbz removes their manifests.
    async fn prune(&self, _env: &BackupEnv<'_>, _gone: &[Manifest]) -> Result<(), BackupError> {
        Ok(())
    }
}

/// The `backup`-role host (the first in inventory order), or E041.
pub fn backup_host(inventory: &Inventory) -> Result<&Host, BackupError> {
    inventory
        .with_role(Role::Backup)
        .into_iter()
        .next()
        .ok_or(BackupError::NoBackupHost)
}

/// The manifest of what `taken` holds, and the bytes to store (encrypted with `key` when
/// given). `started` is when the backup began.
pub fn seal(
    component: &str,
    req: &BackupRequest,
    taken: &Taken,
    started: DateTime<Utc>,
    key: Option<&crate::secret::Secret>,
) -> Result<(Manifest, Option<Vec<u8>>), BackupError> {
    let fail = |reason: String| BackupError::failed(component, &taken.source_host, reason);
    let (size, sha256, stored, bytes) = match &taken.artifact {
        Some(a) => {
            if a.bytes.len() as u64 > repo::MAX_ARTIFACT_BYTES {
                return Err(fail(format!(
                    "the artifact is {}, more than the {} kbz moves through SSH today",
                    repo::human(a.bytes.len() as u64),
                    repo::human(repo::MAX_ARTIFACT_BYTES)
                )));
            }
            let (file, data) = match key {
                Some(k) => (
                    format!("{}.age", a.file),
                    crypt::encrypt(k, &a.bytes).map_err(fail)?,
                ),
                None => (a.file.clone(), a.bytes.clone()),
            };
            let stored = Stored {
                file,
                size_bytes: data.len() as u64,
                sha256: crypt::sha256_hex(&data),
                encrypted: key.is_some(),
            };
            (
                a.bytes.len() as u64,
                crypt::sha256_hex(&a.bytes),
                Some(stored),
                Some(data),
            )
        }
        None => (taken.size_bytes, String::new(), None, None),
    };
    let duration_ms = (Utc::now() - started).num_milliseconds().max(0) as u64;
    let m = Manifest {
        format: 1,
        id: req.id.clone(),
        component: component.into(),
        kind: taken.kind,
        source_host: taken.source_host.clone(),
        time: taken.time,
        duration_ms,
        size_bytes: size,
        sha256,
        tool_version: taken.tool_version.clone(),
        contents: taken.contents.clone(),
        stored,
        label: taken.label.clone(),
    };
    Ok((m, bytes))
}

/// The data of a stored artifact: decrypted (when it was encrypted) and checked against
/// the manifest's sha256 (E044 when either fails).
pub fn unseal(
    m: &Manifest,
    stored_bytes: Vec<u8>,
    key: Option<&crate::secret::Secret>,
) -> Result<Vec<u8>, BackupError> {
    let encrypted = m.stored.as_ref().is_some_and(|s| s.encrypted);
    let file = m
        .stored
        .as_ref()
        .map(|s| s.file.clone())
        .unwrap_or_default();
    let verify = |reason: String| BackupError::Verify {
        id: m.id.clone(),
        path: format!("{}/{}", m.id, file),
        reason,
    };
    let plain = if encrypted {
        let k = key.ok_or_else(|| {
            verify(format!(
                "is encrypted and the secrets file has no `{}` key",
                crypt::KEY_SECRET
            ))
        })?;
        crypt::decrypt(k, &stored_bytes).map_err(verify)?
    } else {
        stored_bytes
    };
    let got = crypt::sha256_hex(&plain);
    if got != m.sha256 {
        return Err(verify(format!(
            "decrypts to data with sha256 {got}, its manifest recorded {}",
            m.sha256
        )));
    }
    Ok(plain)
}

/// Compares a drill's scratch copy with the manifest: one [`Compared`] per key of
/// `expected` that `got` answers. A key the scratch copy does not answer is compared
/// against `null`.
pub fn compare(expected: &Contents, got: &Contents, keys: &[&str]) -> Vec<Compared> {
    keys.iter()
        .filter(|k| expected.contains_key(**k))
        .map(|k| Compared {
            what: (*k).to_string(),
            expected: expected[*k].clone(),
            got: got.get(*k).cloned().unwrap_or(serde_json::Value::Null),
        })
        .collect()
}

/// The first difference of a drill as E047, or `Ok`.
pub fn judge(component: &str, m: &Manifest, d: &Drilled) -> Result<(), BackupError> {
    match d.compared.iter().find(|c| c.expected != c.got) {
        Some(c) => Err(BackupError::DrillMismatch {
            component: component.into(),
            id: m.id.clone(),
            what: c.what.clone(),
            expected: c.expected.to_string(),
            got: c.got.to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use kbz_errors::{Code, HasCode};

    fn taken(bytes: &[u8]) -> Taken {
        Taken {
            kind: BackupKind::Full,
            source_host: "db1".into(),
            time: Utc::now(),
            tool_version: "etcdctl 3.4.23".into(),
            contents: Contents::from([("key_count".to_string(), serde_json::json!(7))]),
            artifact: Some(Artifact {
                file: "snapshot.db".into(),
                bytes: bytes.to_vec(),
            }),
            label: None,
            size_bytes: 0,
        }
    }

    #[test]
    fn sealed_artifacts_unseal_and_a_flipped_byte_is_e044() {
        let key = Secret::generate(32);
        let req = BackupRequest {
            id: "etcd-20261202T190000Z".into(),
            kind: None,
        };
        let (m, bytes) =
            seal("etcd", &req, &taken(b"snapshot"), Utc::now(), Some(&key)).expect("seal");
        let bytes = bytes.expect("stored bytes");
        let stored = m.stored.clone().expect("stored");
        assert_eq!(stored.file, "snapshot.db.age");
        assert!(stored.encrypted);
        assert_eq!(stored.sha256, crypt::sha256_hex(&bytes));
        assert_eq!(
            (m.size_bytes, m.sha256.clone()),
            (8, crypt::sha256_hex(b"snapshot"))
        );
        assert_eq!(
            unseal(&m, bytes.clone(), Some(&key)).expect("unseal"),
            b"snapshot"
        );
        let mut bad = bytes.clone();
        let i = bad.len() - 3;
        bad[i] ^= 0x01;
        let e = unseal(&m, bad, Some(&key)).expect_err("flipped");
        assert_eq!(e.code(), Code::E044);
        assert!(e.to_string().contains("etcd-20261202T190000Z"), "{e}");
        let (plain, raw) = seal("etcd", &req, &taken(b"snapshot"), Utc::now(), None).expect("seal");
        assert_eq!(raw.as_deref(), Some(&b"snapshot"[..]));
        assert!(!plain.stored.as_ref().expect("stored").encrypted);
    }

    #[test]
    fn drills_are_judged_on_the_first_difference() {
        let mut exp = Contents::new();
        exp.insert("key_count".into(), serde_json::json!(7));
        exp.insert("canary".into(), serde_json::json!("t1"));
        let mut got = exp.clone();
        let (m, _) = seal(
            "redis",
            &BackupRequest {
                id: "redis-1".into(),
                kind: None,
            },
            &taken(b"x"),
            Utc::now(),
            None,
        )
        .expect("seal");
        let d = |got: &Contents| Drilled {
            host: "backup1".into(),
            restore_ms: 3,
            compared: compare(&exp, got, &["key_count", "canary", "absent"]),
        };
        assert_eq!(d(&got).compared.len(), 2);
        judge("redis", &m, &d(&got)).expect("equal");
        got.insert("key_count".into(), serde_json::json!(6));
        let e = judge("redis", &m, &d(&got)).expect_err("differs");
        assert_eq!(e.code(), Code::E047);
        assert!(e.to_string().contains("key_count is 6"), "{e}");
    }

    #[test]
    fn no_backup_host_is_e041() {
        let inv = Inventory::parse("servers.tsv", b"db1\t192.0.2.11\tetcd\n").expect("inv");
        assert_eq!(backup_host(&inv).expect_err("none").code(), Code::E041);
        let inv = Inventory::parse("servers.tsv", b"db1\t192.0.2.11\tetcd,backup\n").expect("inv");
        assert_eq!(backup_host(&inv).expect("one").hostname, "db1");
    }
}
