//! Secrets: the `Secret` type that never prints its value, and the secrets file (TOML,
//! mode 0600) where generated service passwords live across runs.

use fs_err as fs;
use kbz_errors::{Code, Diagnostic};
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A secret value. Debug and Display print `****`; use [`Secret::expose`] where the value is
/// really needed (a file written 0600, a command's stdin).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// A new random alphanumeric secret of `len` characters.
    pub fn generate(len: usize) -> Self {
        let s: String = rand::rngs::OsRng
            .sample_iter(&Alphanumeric)
            .take(len)
            .map(char::from)
            .collect();
        Secret(s)
    }

    /// The value. Every call site is a place a secret leaves the type: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// The secrets file: `name = "value"` lines, created 0600, values kept across runs.
#[derive(Clone)]
pub struct Secrets {
    path: Option<PathBuf>,
    values: BTreeMap<String, Secret>,
    dirty: bool,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("path", &self.path)
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    /// An in-memory store that is never written (dry-run, tests).
    pub fn in_memory() -> Self {
        Secrets {
            path: None,
            values: BTreeMap::new(),
            dirty: false,
        }
    }

    /// An in-memory store where each named secret is `<name>-PLACEHOLDER`: stable values for
    /// snapshots of rendered configs and for `cargo xtask render-configs`.
    pub fn placeholders<I: IntoIterator<Item = String>>(names: I) -> Self {
        let mut s = Secrets::in_memory();
        for n in names {
            let v = Secret::new(format!("{n}-PLACEHOLDER"));
            s.values.insert(n, v);
        }
        s
    }

    /// Loads the file if it exists (refusing one readable by group or others), else starts empty.
    pub fn load(path: &Path) -> Result<Self, Diagnostic> {
        let shown = path.display().to_string();
        let mut values = BTreeMap::new();
        if path.exists() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(path)
                    .map_err(|e| Diagnostic::new(Code::E052, e.to_string()).at(&shown, None))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(Diagnostic::new(
                        Code::E051,
                        format!(
                            "secrets file is mode {:04o}; it must be readable by its owner only",
                            mode & 0o777
                        ),
                    )
                    .at(&shown, None)
                    .hint(format!("chmod 600 {shown}")));
                }
            }
            let text = fs::read_to_string(path)
                .map_err(|e| Diagnostic::new(Code::E052, e.to_string()).at(&shown, None))?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
                // The toml message quotes the offending line, which may hold a secret: drop it.
                Diagnostic::new(Code::E052, "secrets file is not valid TOML `name = \"value\"` lines")
                    .at(&shown, line)
                    .hint("fix the line, or move the file away to have new secrets generated (services keep the old ones!)")
            })?;
            for (k, v) in table {
                match v {
                    toml::Value::String(s) => {
                        values.insert(k, Secret(s));
                    }
                    _ => {
                        return Err(Diagnostic::new(
                            Code::E052,
                            format!("secret `{k}` is not a string"),
                        )
                        .at(&shown, None))
                    }
                }
            }
        }
        Ok(Secrets {
            path: Some(path.to_path_buf()),
            values,
            dirty: false,
        })
    }

    /// The secret called `name`, generating (and remembering) a 32-character one if absent.
    pub fn get_or_generate(&mut self, name: &str) -> Secret {
        if let Some(s) = self.values.get(name) {
            return s.clone();
        }
        let s = Secret::generate(32);
        self.values.insert(name.to_string(), s.clone());
        self.dirty = true;
        s
    }

    /// The secret called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.values.get(name)
    }

    /// Sets a secret (for user-provided tokens).
    pub fn set(&mut self, name: &str, value: Secret) {
        self.values.insert(name.to_string(), value);
        self.dirty = true;
    }

    /// Every secret value, for log scrubbing.
    pub fn values(&self) -> impl Iterator<Item = &Secret> {
        self.values.values()
    }

    /// Writes the file (0600, atomically) if anything was generated since loading.
    pub fn save(&mut self) -> Result<(), Diagnostic> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let shown = path.display().to_string();
        let err = |e: std::io::Error| Diagnostic::new(Code::E052, e.to_string()).at(&shown, None);
        let mut text =
            String::from("# kbz secrets: generated, mode 0600, never commit this file.\n");
        for (k, v) in &self.values {
            text.push_str(&format!("{} = {}\n", k, toml::Value::String(v.0.clone())));
        }
        write_private(path, text.as_bytes()).map_err(err)?;
        self.dirty = false;
        Ok(())
    }
}

/// Writes a file readable by its owner only (0600), atomically: a temporary file in the same
/// directory, synced, then renamed over the target. Creates the directory if needed.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "**** ****");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn generated_secrets_are_kept_and_file_is_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.toml");
        let mut s = Secrets::load(&path).expect("load");
        let a = s.get_or_generate("postgres_superuser");
        assert_eq!(a.expose().len(), 32);
        s.save().expect("save");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut again = Secrets::load(&path).expect("reload");
        assert_eq!(again.get_or_generate("postgres_superuser"), a);
        assert_ne!(again.get_or_generate("redis"), a);
    }

    #[test]
    fn open_secrets_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secrets.toml");
        std::fs::write(&path, "a = \"b\"\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Secrets::load(&path).expect_err("must refuse");
        assert_eq!(err.code, Code::E051);
    }
}
