//! The manifest every backup carries (`manifest.json` next to its artifact): what it is of,
//! where and when it was taken, its size and sha256, the tool that made it and what was
//! inside, so a restore or drill can be checked against it. Also the pure choices made on a
//! list of manifests: which one a restore takes (`--id`, `--at`, latest) and which ones a
//! prune removes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::BackupError;

/// What was inside a backup, by name: `key_count`, `revision`, `canary`, `rows.public.t`.
/// Numbers are compared exactly by drills; text values (a canary's value) too.
pub type Contents = BTreeMap<String, serde_json::Value>;

/// Full or differential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Everything (every etcd snapshot and Redis RDB is one).
    Full,
    /// Changes since the last full backup (pgBackRest `--type=diff`).
    Diff,
}

impl std::fmt::Display for BackupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupKind::Full => "full",
            BackupKind::Diff => "diff",
        })
    }
}

/// The artifact kbz stored in the repository (none for a component whose tool keeps its
/// own repository, such as pgBackRest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// File name inside the backup's directory (`snapshot.db.age`).
    pub file: String,
    /// Size of the stored file in bytes (after encryption).
    pub size_bytes: u64,
    /// sha256 of the stored file: `verify` compares it on the backup host.
    pub sha256: String,
    /// Encrypted with the secrets file's `backup_encryption` key (age).
    pub encrypted: bool,
}

/// One backup's manifest (`DIR/<component>/<id>/manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (1).
    pub format: u32,
    /// `<component>-<YYYYMMDDTHHMMSSZ>`, unique in the repository.
    pub id: String,
    /// Component (`etcd`, `redis`, `postgres`).
    pub component: String,
    /// Full or differential.
    pub kind: BackupKind,
    /// Inventory hostname the data was taken from.
    pub source_host: String,
    /// The moment the data represents (the snapshot's time).
    pub time: DateTime<Utc>,
    /// How long taking and storing it took, in milliseconds.
    pub duration_ms: u64,
    /// Size of the data itself in bytes (before encryption).
    pub size_bytes: u64,
    /// sha256 of the data itself (before encryption): checked again after a restore's
    /// decryption.
    pub sha256: String,
    /// The tool and version that made it (`etcdctl 3.4.23`, `redis-server 7.0.15`).
    pub tool_version: String,
    /// What was inside (key counts, revision, canary values).
    pub contents: Contents,
    /// The stored artifact, when kbz stores one.
    pub stored: Option<Stored>,
    /// The tool's own name of the backup in its repository (pgBackRest's label).
    pub label: Option<String>,
}

/// Characters an id may hold: it names a directory in shell scripts on the backup host.
pub fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !id.contains("..")
}

/// The id of a backup of `component` started at `at`: `etcd-20261202T193000Z`.
pub fn new_id(component: &str, at: DateTime<Utc>) -> String {
    format!("{component}-{}", at.format("%Y%m%dT%H%M%SZ"))
}

impl Manifest {
    /// Parses a manifest read from the repository, refusing ids, components and file
    /// names that are not plain (they reach shell scripts).
    pub fn parse(text: &str, path: &str) -> Result<Manifest, String> {
        let m: Manifest =
            serde_json::from_str(text).map_err(|e| format!("{path}: not a manifest: {e}"))?;
        let plain_file = m.stored.as_ref().is_none_or(|s| safe_id(&s.file));
        if !safe_id(&m.id) || !safe_id(&m.component) || !plain_file {
            return Err(format!(
                "{path}: the manifest names an id, component or file with characters kbz \
                 never writes"
            ));
        }
        Ok(m)
    }

    /// The manifest as pretty JSON (what the repository stores).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Which backup a restore or drill takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The newest one.
    Latest,
    /// The one with this id.
    Id(String),
    /// The newest one taken at or before this time (point-in-time for PostgreSQL: the base
    /// backup the replay starts from).
    At(DateTime<Utc>),
}

/// The backup of `component` that `target` names, from `all` (any order), or E045 saying
/// what exists.
pub fn select<'a>(
    all: &'a [Manifest],
    component: &str,
    target: &Target,
) -> Result<&'a Manifest, BackupError> {
    let mut mine: Vec<&Manifest> = all.iter().filter(|m| m.component == component).collect();
    mine.sort_by_key(|m| m.time);
    let not_found = |what: String| BackupError::NotFound {
        component: component.into(),
        what,
    };
    let Some(first) = mine.first() else {
        return Err(not_found(
            "in the repository: none has been taken yet; take one with `kbz-backup run`".into(),
        ));
    };
    match target {
        Target::Latest => Ok(mine[mine.len() - 1]),
        Target::Id(id) => mine.iter().copied().find(|m| &m.id == id).ok_or_else(|| {
            not_found(format!(
                "has id `{id}`; `kbz-backup list` shows the {} there are",
                mine.len()
            ))
        }),
        Target::At(at) => mine
            .iter()
            .rev()
            .copied()
            .find(|m| m.time <= *at)
            .ok_or_else(|| {
                not_found(format!(
                    "was taken at or before {}: the first one is {} from {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    first.id,
                    first
                        .time
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ))
            }),
    }
}

/// Retention: `[backup] keep_full` and `keep_days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest this many full backups of each component are always kept.
    pub keep_full: u32,
    /// Backups younger than this many days are kept too.
    pub keep_days: u32,
}

/// The backups a prune removes at `now`: per component, every backup older than
/// `keep_days` that is not among the newest `keep_full` full ones, and no differential
/// backup newer than the oldest full one kept (its base stays).
pub fn prune_plan(all: &[Manifest], keep: Retention, now: DateTime<Utc>) -> Vec<&Manifest> {
    let mut by_component: BTreeMap<&str, Vec<&Manifest>> = BTreeMap::new();
    for m in all {
        by_component.entry(&m.component).or_default().push(m);
    }
    let cutoff = now - chrono::Duration::days(i64::from(keep.keep_days));
    let mut out = Vec::new();
    for (_, mut ms) in by_component {
        ms.sort_by_key(|m| std::cmp::Reverse(m.time));
        let fulls: Vec<&Manifest> = ms
            .iter()
            .copied()
            .filter(|m| m.kind == BackupKind::Full)
            .take(keep.keep_full as usize)
            .collect();
        let oldest_kept_full = fulls.last().map(|m| m.time);
        for m in ms {
            let kept_full = fulls.iter().any(|f| f.id == m.id);
            let young = m.time >= cutoff;
            let diff_on_kept_base =
                m.kind == BackupKind::Diff && oldest_kept_full.is_some_and(|t| m.time > t);
            if !kept_full && !young && !diff_on_kept_base {
                out.push(m);
            }
        }
    }
    out.sort_by(|a, b| (&a.component, a.time).cmp(&(&b.component, b.time)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(2026, 11, day)
            .and_then(|d| d.and_hms_opt(hour, 0, 0))
            .map(|t| t.and_utc())
            .expect("date")
    }

    fn m(component: &str, kind: BackupKind, time: DateTime<Utc>) -> Manifest {
        Manifest {
            format: 1,
            id: new_id(component, time),
            component: component.into(),
            kind,
            source_host: "db1".into(),
            time,
            duration_ms: 10,
            size_bytes: 3,
            sha256: "ab".into(),
            tool_version: "etcdctl 3.4.23".into(),
            contents: Contents::new(),
            stored: None,
            label: None,
        }
    }

    #[test]
    fn ids_are_plain_and_manifests_round_trip() {
        assert_eq!(new_id("etcd", at(2, 19)), "etcd-20261102T190000Z");
        for bad in ["", "../x", "a/b", "-rf", "a b", "a;b", "a..b"] {
            assert!(!safe_id(bad), "{bad}");
        }
        let one = m("etcd", BackupKind::Full, at(2, 19));
        let back = Manifest::parse(&one.to_json(), "m.json").expect("parse");
        assert_eq!(back, one);
        let mut evil = one.clone();
        evil.id = "x; rm -rf /".into();
        assert!(Manifest::parse(&evil.to_json(), "m.json").is_err());
    }

    #[test]
    fn select_by_latest_id_and_time() {
        let all = vec![
            m("etcd", BackupKind::Full, at(2, 10)),
            m("redis", BackupKind::Full, at(3, 10)),
            m("etcd", BackupKind::Full, at(4, 10)),
        ];
        assert_eq!(
            select(&all, "etcd", &Target::Latest).expect("latest").time,
            at(4, 10)
        );
        assert_eq!(
            select(&all, "etcd", &Target::At(at(3, 0)))
                .expect("at")
                .time,
            at(2, 10)
        );
        let id = all[0].id.clone();
        assert_eq!(
            select(&all, "etcd", &Target::Id(id)).expect("id").time,
            at(2, 10)
        );
        let early = select(&all, "etcd", &Target::At(at(1, 0))).expect_err("before the first");
        assert_eq!(kbz_errors::HasCode::code(&early), kbz_errors::Code::E045);
        assert!(
            early
                .to_string()
                .contains("the first one is etcd-20261102T100000Z"),
            "{early}"
        );
        let none = select(&all, "postgres", &Target::Latest).expect_err("none");
        assert!(
            none.to_string().contains("none has been taken yet"),
            "{none}"
        );
    }

    #[test]
    fn prune_keeps_the_newest_fulls_and_young_backups() {
        let all = vec![
            m("etcd", BackupKind::Full, at(1, 0)),
            m("etcd", BackupKind::Full, at(2, 0)),
            m("etcd", BackupKind::Full, at(3, 0)),
            m("etcd", BackupKind::Full, at(20, 0)),
            m("postgres", BackupKind::Full, at(1, 0)),
            m("postgres", BackupKind::Diff, at(2, 0)),
            m("postgres", BackupKind::Full, at(3, 0)),
            m("postgres", BackupKind::Diff, at(4, 0)),
        ];
        let keep = Retention {
            keep_full: 2,
            keep_days: 7,
        };
        let gone: Vec<String> = prune_plan(&all, keep, at(25, 0))
            .iter()
            .map(|m| m.id.clone())
            .collect();
        assert_eq!(
            gone,
            vec![
                "etcd-20261101T000000Z",
                "etcd-20261102T000000Z",
                // The diff of 2 Nov sits on the full of 1 Nov, which is kept (one of the 2
                // newest fulls), so it stays; nothing of postgres goes.
            ]
        );
        let all_young = prune_plan(&all, keep, at(5, 0));
        assert!(all_young.is_empty());
    }
}
