//! Host key verification against known_hosts (hashed and plain entries, revoked keys) and
//! the explicit, serialized recording of new keys.

use super::*;

/// Serializes appends to known_hosts files from parallel connections.
pub(super) static KNOWN_HOSTS_APPEND: Mutex<()> = Mutex::new(());

/// The entries of a known_hosts file that libssh2 understands, plus revoked keys.
///
/// Lines libssh2 cannot parse (certificate authorities, security-key types) are skipped rather
/// than failing the whole file; a host known only through such a line counts as unknown.
pub(super) struct KnownHostsFile {
    path: PathBuf,
    entries: Vec<String>,
    revoked: Vec<String>,
}

impl KnownHostsFile {
    pub(super) fn load(path: &Path, host: &str) -> Result<Self, ExecError> {
        let text = match std::fs::read(path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(ExecError::File {
                    host: host.to_string(),
                    path: path.display().to_string(),
                    reason: format!("cannot read known_hosts: {e}"),
                })
            }
        };
        let mut entries = Vec::new();
        let mut revoked = Vec::new();
        let scratch = Session::new().ok();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('@') {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.first() == Some(&"@revoked") {
                    if let Some(key) = f.get(3) {
                        revoked.push((*key).to_string());
                    }
                }
                continue;
            }
            let parses = scratch
                .as_ref()
                .and_then(|s| s.known_hosts().ok())
                .map(|mut kh| kh.read_str(line, KnownHostFileKind::OpenSSH).is_ok())
                .unwrap_or(false);
            if parses {
                entries.push(line.to_string());
            }
        }
        Ok(KnownHostsFile {
            path: path.to_path_buf(),
            entries,
            revoked,
        })
    }

    /// Host-key algorithms for the handshake: the types recorded for `name` first (so a
    /// server with several keys shows the one we know), then libssh2's others. Host
    /// certificates are left out: they cannot be checked against known_hosts.
    pub(super) fn host_key_preferences(&self, session: &Session, name: &str) -> Option<String> {
        let supported = session.supported_algs(MethodType::HostKey).ok()?;
        let mut prefs: Vec<String> = Vec::new();
        for line in &self.entries {
            let Ok(mut kh) = session.known_hosts() else {
                continue;
            };
            if kh.read_str(line, KnownHostFileKind::OpenSSH).is_err() {
                continue;
            }
            // A key that cannot match reports Mismatch exactly when the line names this host.
            if !matches!(kh.check(name, b"\0kbz-probe"), CheckResult::Mismatch) {
                continue;
            }
            let Some(key_type) = line.split_whitespace().nth(1) else {
                continue;
            };
            let algs: &[&str] = match key_type {
                "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
                other => &[other][..],
            };
            for a in algs {
                if supported.contains(a) && !prefs.iter().any(|p| p == a) {
                    prefs.push((*a).to_string());
                }
            }
        }
        for a in &supported {
            if !a.contains("-cert-") && !prefs.iter().any(|p| p == a) {
                prefs.push((*a).to_string());
            }
        }
        (!prefs.is_empty()).then(|| prefs.join(","))
    }

    /// Checks the key the server presented; records it when unknown and allowed.
    pub(super) fn verify(
        &self,
        session: &Session,
        ep: &Endpoint,
        opts: &SshOptions,
    ) -> Result<(), ExecError> {
        let name = ep.known_hosts_name();
        let shown = self.path.display().to_string();
        let (key, _) = session.host_key().ok_or_else(|| ExecError::Handshake {
            host: name.clone(),
            reason: "the server presented no host key".into(),
        })?;
        let key_b64 = base64::engine::general_purpose::STANDARD.encode(key);
        if self.revoked.contains(&key_b64) {
            return Err(ExecError::HostKeyMismatch {
                host: name,
                known_hosts: shown,
            });
        }
        let mut kh = session.known_hosts().map_err(|e| ExecError::Handshake {
            host: name.clone(),
            reason: format!("libssh2 known_hosts: {}", e.message()),
        })?;
        for line in &self.entries {
            let _ = kh.read_str(line, KnownHostFileKind::OpenSSH);
        }
        match kh.check(&name, key) {
            CheckResult::Match => Ok(()),
            CheckResult::Mismatch => Err(ExecError::HostKeyMismatch {
                host: name,
                known_hosts: shown,
            }),
            CheckResult::NotFound if opts.accept_new_host_keys => {
                append_known_host(&self.path, &name, key)?;
                let recorded = RecordedKey {
                    host: name.clone(),
                    key_type: read_ssh_string(key)
                        .and_then(|(t, _)| std::str::from_utf8(t).ok())
                        .unwrap_or("unknown")
                        .to_string(),
                    fingerprint: fingerprint(key),
                };
                tracing::warn!(host = %name, known_hosts = %shown, key_type = %recorded.key_type, fingerprint = %recorded.fingerprint, "recorded a new host key");
                if let Some(hook) = &opts.on_new_host_key {
                    (hook.0)(&recorded);
                }
                Ok(())
            }
            CheckResult::NotFound => Err(ExecError::HostKeyUnknown {
                host: name,
                known_hosts: shown,
            }),
            CheckResult::Failure => Err(ExecError::Handshake {
                host: name,
                reason: format!("libssh2 could not check the host key against {shown}"),
            }),
        }
    }
}

/// The OpenSSH fingerprint of a host key blob: `SHA256:` and the unpadded base64 of its
/// sha256, as `ssh-keygen -lf` prints it.
pub fn fingerprint(key: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha2::Sha256::digest(key))
    )
}

/// Appends `name keytype base64` to known_hosts, creating the file (0600) and its directory
/// (0700) when missing. Other lines are never rewritten.
pub(super) fn append_known_host(path: &Path, name: &str, key: &[u8]) -> Result<(), ExecError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let file_err = |reason: String| ExecError::File {
        host: name.to_string(),
        path: path.display().to_string(),
        reason,
    };
    let key_type = read_ssh_string(key)
        .and_then(|(t, _)| std::str::from_utf8(t).ok())
        .ok_or_else(|| file_err("the host key has no type name".into()))?
        .to_string();
    let line = format!(
        "{name} {key_type} {}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let _guard = KNOWN_HOSTS_APPEND.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| file_err(format!("cannot create the directory: {e}")))?;
        }
    }
    let needs_newline = match std::fs::read(path) {
        Ok(b) => !b.is_empty() && !b.ends_with(b"\n"),
        Err(_) => false,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| file_err(e.to_string()))?;
    let text = if needs_newline {
        format!("\n{line}")
    } else {
        line
    };
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| file_err(e.to_string()))
}
