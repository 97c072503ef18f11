//! The repository: a directory on the `backup`-role host, used over its [`Executor`] (no
//! connection of its own). Layout: `DIR/<component>/<id>/manifest.json` next to the stored
//! artifact (`DIR/<component>/<id>/<file>`). The manifest is written last, after the
//! artifact's sha256 was checked on the host, so a listing never shows a partial backup.
//! Listing, checksums and pruning cost one round trip each.

use std::sync::Arc;

use base64::Engine as _;

use super::manifest::Manifest;
use super::BackupError;
use crate::executor::{check, Cmd, Executor};
use crate::shell::quote;

/// The largest artifact moved through the executor (its output is base64 on stdout, which
/// executors cap at 64 MiB): larger ones are refused with E042 before anything is stored.
pub const MAX_ARTIFACT_BYTES: u64 = 40 * 1024 * 1024;

/// Free bytes the backup host keeps beyond an artifact (E048 below that).
const SPARE_BYTES: u64 = 64 * 1024 * 1024;

/// The repository directory on the backup host.
#[derive(Debug, Clone)]
pub struct Repository {
    exec: Arc<dyn Executor>,
    dir: String,
}

/// What `verify` found about one stored artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// sha256 and size match the manifest.
    Good,
    /// Differs, or is missing: the reason names how.
    Bad(String),
}

impl Repository {
    /// The repository `dir` (`[backup] dir`, checked by the config) through `exec`.
    pub fn new(exec: Arc<dyn Executor>, dir: &str) -> Self {
        Repository {
            exec,
            dir: dir.to_string(),
        }
    }

    /// The backup host's name.
    pub fn host(&self) -> &str {
        self.exec.name()
    }

    /// The repository directory.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The executor of the backup host (drills run scratch instances there).
    pub fn exec(&self) -> &Arc<dyn Executor> {
        &self.exec
    }

    /// The directory of one backup.
    pub fn backup_dir(&self, m: &Manifest) -> String {
        format!("{}/{}/{}", self.dir, m.component, m.id)
    }

    /// The stored artifact's path, if kbz stores one.
    pub fn artifact_path(&self, m: &Manifest) -> Option<String> {
        m.stored
            .as_ref()
            .map(|s| format!("{}/{}", self.backup_dir(m), s.file))
    }

    fn unreachable(&self, reason: impl Into<String>) -> BackupError {
        BackupError::Unreachable {
            host: self.host().into(),
            dir: self.dir.clone(),
            reason: reason.into(),
        }
    }

    /// Creates the directory (0700) if needed and returns the free bytes there (E041 when
    /// the host or directory cannot be used).
    pub async fn prepare(&self) -> Result<u64, BackupError> {
        let d = quote(&self.dir);
        let script = format!(
            "set -e\nmkdir -p {d}\nchmod 0700 {d}\ntest -w {d}\ndf -Pk {d} | awk 'NR==2 {{print $4}}'\n"
        );
        let out = self
            .exec
            .run(&Cmd::new(script))
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        check(self.host(), &out, "prepare the backup repository")
            .map_err(|e| self.unreachable(e.to_string()))?;
        let kib: u64 = out
            .stdout_str()
            .trim()
            .parse()
            .map_err(|_| self.unreachable("df printed no free space figure"))?;
        Ok(kib * 1024)
    }

    /// Every complete backup in the repository (one round trip). A manifest that does not
    /// parse is skipped and named in the second list.
    pub async fn list(&self) -> Result<(Vec<Manifest>, Vec<String>), BackupError> {
        let d = quote(&self.dir);
        let script = format!(
            "d={d}\n[ -d \"$d\" ] || exit 0\nfor f in \"$d\"/*/*/manifest.json; do [ -f \"$f\" ] || continue; printf '@@kbz-manifest %s\\n' \"$f\"; base64 -w0 \"$f\"; echo; done\n"
        );
        let out = self
            .exec
            .run(&Cmd::new(script))
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        check(self.host(), &out, "list the backup repository")
            .map_err(|e| self.unreachable(e.to_string()))?;
        Ok(parse_listing(&out.stdout_str()))
    }

    /// Stores one backup: the artifact (when given) then its manifest, both 0600. The free
    /// space is checked first (E048); a failure removes what was written (E042).
    pub async fn store(&self, m: &Manifest, artifact: Option<&[u8]>) -> Result<(), BackupError> {
        let free = self.prepare().await?;
        let need = artifact.map(|a| a.len() as u64).unwrap_or(0) + SPARE_BYTES;
        if free < need {
            return Err(BackupError::StorageFull {
                host: self.host().into(),
                reason: format!(
                    "{} has {} free, the backup needs {} (with {} to spare); prune old \
                     backups (`kbz-backup prune`), lower [backup] keep_full/keep_days or \
                     grow the disk",
                    self.dir,
                    human(free),
                    human(need),
                    human(SPARE_BYTES)
                ),
            });
        }
        let dir = self.backup_dir(m);
        let failed = |reason: String| {
            if reason.contains("No space left") {
                BackupError::StorageFull {
                    host: self.host().into(),
                    reason,
                }
            } else {
                BackupError::failed(&m.component, self.host(), reason)
            }
        };
        let mk = self
            .exec
            .run(&Cmd::new(format!(
                "mkdir -p -m 0700 {q} && chmod 0700 {q}",
                q = quote(&dir)
            )))
            .await
            .map_err(|e| failed(e.to_string()))?;
        check(self.host(), &mk, "create the backup's directory")
            .map_err(|e| failed(e.to_string()))?;
        let written = async {
            if let (Some(bytes), Some(path)) = (artifact, self.artifact_path(m)) {
                self.exec.put_file(&path, bytes, 0o600, "root:root").await?;
            }
            self.exec
                .put_file(
                    &format!("{dir}/manifest.json"),
                    m.to_json().as_bytes(),
                    0o600,
                    "root:root",
                )
                .await
        }
        .await;
        if let Err(e) = written {
            let _ = self
                .exec
                .run(&Cmd::new(format!("rm -rf {}", quote(&dir))))
                .await;
            return Err(failed(format!("storing in {dir}: {e}")));
        }
        Ok(())
    }

    /// Reads a stored artifact back and checks it against the manifest (E044 when it
    /// differs or is missing).
    pub async fn fetch(&self, m: &Manifest) -> Result<Vec<u8>, BackupError> {
        let (Some(stored), Some(path)) = (&m.stored, self.artifact_path(m)) else {
            return Err(BackupError::Verify {
                id: m.id.clone(),
                path: self.backup_dir(m),
                reason: "has no stored artifact (its tool keeps its own repository)".into(),
            });
        };
        let bytes = self
            .exec
            .read_file(&path)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let Some(bytes) = bytes else {
            return Err(BackupError::Verify {
                id: m.id.clone(),
                path,
                reason: "is missing".into(),
            });
        };
        let got = super::crypt::sha256_hex(&bytes);
        if got != stored.sha256 {
            return Err(BackupError::Verify {
                id: m.id.clone(),
                path,
                reason: format!(
                    "has sha256 {got}, its manifest recorded {} ({} bytes, manifest {})",
                    stored.sha256,
                    bytes.len(),
                    stored.size_bytes
                ),
            });
        }
        Ok(bytes)
    }

    /// Checks every stored artifact of `ms` on the backup host (sha256 and size; one round
    /// trip, nothing transferred). Manifests without an artifact are not in the answer.
    pub async fn checksums(&self, ms: &[Manifest]) -> Result<Vec<(String, Checked)>, BackupError> {
        let mut script = String::new();
        let mut asked = Vec::new();
        for m in ms {
            if let (Some(stored), Some(path)) = (&m.stored, self.artifact_path(m)) {
                let q = quote(&path);
                script.push_str(&format!(
                    "if [ -f {q} ]; then printf '%s %s %s\\n' {id} \"$(sha256sum < {q} | cut -c1-64)\" \"$(stat -c %s {q})\"; else printf '%s missing\\n' {id}; fi\n",
                    id = quote(&m.id)
                ));
                asked.push((m.id.clone(), path, stored.clone()));
            }
        }
        if asked.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .exec
            .run(&Cmd::new(script))
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        check(self.host(), &out, "checksum the stored backups")
            .map_err(|e| self.unreachable(e.to_string()))?;
        let text = out.stdout_str();
        Ok(asked
            .into_iter()
            .map(|(id, path, stored)| {
                let line = text
                    .lines()
                    .find(|l| l.split_whitespace().next() == Some(id.as_str()));
                let fields: Vec<&str> = line.map(|l| l.split_whitespace().collect()).unwrap_or_default();
                let checked = match fields.as_slice() {
                    [_, sha, size] if *sha == stored.sha256 && size.parse() == Ok(stored.size_bytes) => {
                        Checked::Good
                    }
                    [_, sha, size] => Checked::Bad(format!(
                        "{path} has sha256 {sha} and {size} bytes, its manifest recorded {} and {} bytes",
                        stored.sha256, stored.size_bytes
                    )),
                    [_, "missing"] => Checked::Bad(format!("{path} is missing")),
                    _ => Checked::Bad(format!("{path}: no answer from the checksum script")),
                };
                (id, checked)
            })
            .collect())
    }

    /// Removes one backup's directory (E046 when it fails).
    pub async fn remove(&self, m: &Manifest) -> Result<(), BackupError> {
        let dir = self.backup_dir(m);
        let prune = |reason: String| BackupError::Prune {
            id: m.id.clone(),
            host: self.host().into(),
            reason,
        };
        let out = self
            .exec
            .run(&Cmd::new(format!("rm -rf -- {}", quote(&dir))))
            .await
            .map_err(|e| prune(e.to_string()))?;
        check(self.host(), &out, &format!("remove {dir}")).map_err(|e| prune(e.to_string()))
    }
}

/// Parses the listing script's output: manifests, and the problems of unreadable ones.
pub fn parse_listing(text: &str) -> (Vec<Manifest>, Vec<String>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(path) = line.strip_prefix("@@kbz-manifest ") else {
            continue;
        };
        let body = lines.next().unwrap_or("");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| format!("{path}: not base64: {e}"))
            .and_then(|b| String::from_utf8(b).map_err(|e| format!("{path}: not UTF-8: {e}")));
        match decoded.and_then(|t| Manifest::parse(&t, path)) {
            Ok(m) => ok.push(m),
            Err(e) => bad.push(e),
        }
    }
    ok.sort_by(|a, b| (&a.component, a.time).cmp(&(&b.component, b.time)));
    (ok, bad)
}

/// Bytes for people: `512 B`, `3.2 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_parse_and_bad_manifests_are_named() {
        let good = r#"{"format":1,"id":"etcd-20261202T190000Z","component":"etcd","kind":"full","source_host":"db1","time":"2026-12-02T19:00:00Z","duration_ms":5,"size_bytes":3,"sha256":"ab","tool_version":"etcdctl 3.4","contents":{"key_count":4},"stored":null,"label":null}"#;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            "@@kbz-manifest /r/etcd/x/manifest.json\n{}\n@@kbz-manifest /r/redis/y/manifest.json\n{}\n",
            b64(good),
            b64("{not json")
        );
        let (ok, bad) = parse_listing(&text);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].contents["key_count"], 4);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("/r/redis/y/manifest.json"), "{bad:?}");
        assert_eq!(human(0), "0 B");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(human(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(human(3 * 1024 * 1024 + 200_000), "3.2 MiB");
    }
}
