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

/// Writes a file readable by its owner only (0600), atomically: a new temporary file in the
/// same directory, created exclusively (`O_EXCL`: a planted file or symlink there is never
/// written through) with a random name, synced, renamed over the target (a symlink at
/// the target is replaced, not followed), and the directory synced. Creates the directory
/// (0700) if needed.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let mut attempt = 0;
    let (tmp, mut f) = loop {
        let suffix: String = rand::rngs::OsRng
            .sample_iter(&Alphanumeric)
            .take(12)
            .map(char::from)
            .collect();
        let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 5 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let written = f
        .write_all(data)
        .and_then(|_| f.sync_all())
        .and_then(|_| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    fs::File::open(dir)?.sync_all()
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
    fn private_writes_never_follow_a_planted_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").expect("write");
        let path = dir.path().join("secrets.toml");
        // The old fixed temporary name, and the target itself, planted as symlinks.
        std::os::unix::fs::symlink(&victim, dir.path().join("secrets.toml.tmp")).expect("ln");
        std::os::unix::fs::symlink(&victim, &path).expect("ln");
        write_private(&path, b"a = \"s3cret\"\n").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep me");
        assert!(!std::fs::symlink_metadata(&path)
            .expect("meta")
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "a = \"s3cret\"\n"
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp") && n != "secrets.toml.tmp")
            .collect();
        assert!(left.is_empty(), "{left:?}");
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
