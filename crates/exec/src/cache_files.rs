//! The files of a download cache directory (`<dir>/<sha256>/<file name>`, see
//! [`crate::cache`]): [`list`] every cached artifact with its size, age and whether its bytes
//! still match the sha256 it is filed under, and [`prune`] what no pin references (or
//! everything), together with temporary and partial files left by interrupted downloads.
//!
//! Both work on the directory alone, without the network. A directory that does not exist is
//! an empty cache. Pruning never follows a symbolic link: a link found in the cache is
//! refused (reported in [`PruneReport::refused`], left in place), and nothing outside the
//! cache directory is ever deleted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why the cache directory could not be listed or pruned.
#[derive(Debug, thiserror::Error)]
pub enum CacheFilesError {
    /// Reading, hashing or removing a file failed.
    #[error("download cache {}: {source}; check the directory's owner and permissions (`ls -la {}`)", path.display(), path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The cache directory is not a directory.
    #[error("download cache {}: not a directory; move it aside (`mv {} {}.old`)", path.display(), path.display(), path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
}

impl kbz_errors::HasCode for CacheFilesError {
    fn code(&self) -> kbz_errors::Code {
        kbz_errors::Code::E028
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheFilesError + '_ {
    move |source| CacheFilesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One artifact in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedArtifact {
    /// The sha256 it is filed under (its directory's name, lowercase hex).
    pub sha256: String,
    /// Its file name.
    pub file: String,
    /// Its full path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last modified (`None` where the file system does not say).
    pub modified: Option<SystemTime>,
    /// Whether its bytes still hash to [`CachedArtifact::sha256`] (a damaged file is fetched
    /// again before it is used).
    pub intact: bool,
}

/// True for a directory name the cache files artifacts under: 64 lowercase hex digits.
pub fn is_sha256_dir(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Names the cache gives its temporary files and directories (`.part-*`, `.pip-*`).
fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
}

/// The entries of `dir` sorted by name; an absent directory has none.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, std::fs::Metadata)>, CacheFilesError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(CacheFilesError::NotADirectory {
                path: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(io(dir))?;
        let path = e.path();
        // `symlink_metadata`: a link is seen as a link, never as what it points to.
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        out.push((e.file_name().to_string_lossy().into_owned(), path, meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Every artifact in the cache directory `dir`, sorted by sha256 then file name, each hashed
/// to tell whether it is still intact. Temporary files, symbolic links and entries that are
/// not filed under a sha256 are not artifacts and are left out ([`prune`] removes them).
/// A `dir` that does not exist is an empty cache.
pub fn list(dir: &Path) -> Result<Vec<CachedArtifact>, CacheFilesError> {
    let mut out = Vec::new();
    for (sha, sub, meta) in entries(dir)? {
        if !meta.is_dir() || !is_sha256_dir(&sha) {
            continue;
        }
        for (file, path, meta) in entries(&sub)? {
            if !meta.is_file() || is_temporary(&file) {
                continue;
            }
            let actual = crate::cache::sha256_file(&path).map_err(io(&path))?;
            out.push(CachedArtifact {
                intact: actual == sha,
                sha256: sha.clone(),
                file,
                size: meta.len(),
                modified: meta.modified().ok(),
                path,
            });
        }
    }
    Ok(out)
}

/// What [`prune`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// Artifacts filed under one of these sha256s (any case); everything else goes.
    Pinned(BTreeSet<String>),
    /// Nothing: the cache is emptied.
    Nothing,
}

/// Why an entry was (or, in a dry run, would be) removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedKind {
    /// A cached artifact that no pin references (or any artifact, with [`Keep::Nothing`]).
    Unpinned,
    /// A temporary or partial file of an interrupted download, or an entry that is not
    /// filed under a sha256.
    Leftover,
}

/// One removed (or, in a dry run, removable) file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Its path.
    pub path: PathBuf,
    /// The sha256 directory it was in, if any.
    pub sha256: Option<String>,
    /// Its size in bytes.
    pub size: u64,
    /// Why it went.
    pub kind: RemovedKind,
}

/// What [`prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The files removed, in path order (with `dry_run`: those that would be).
    pub removed: Vec<Removed>,
    /// Symbolic links found in the cache: never followed, never removed.
    pub refused: Vec<PathBuf>,
    /// The bytes freed (with `dry_run`: that would be).
    pub bytes_freed: u64,
}

/// Removes from the cache directory `dir` every artifact that `keep` does not keep, every
/// temporary or partial file, and every entry not filed under a sha256; with `dry_run`
/// nothing is removed and the report says what would be. Only files inside `dir` are
/// removed, and symbolic links are refused, not followed. A `dir` that does not exist is an
/// empty cache.
pub fn prune(dir: &Path, keep: &Keep, dry_run: bool) -> Result<PruneReport, CacheFilesError> {
    let keep: Option<BTreeSet<String>> = match keep {
        Keep::Pinned(set) => Some(set.iter().map(|s| s.trim().to_ascii_lowercase()).collect()),
        Keep::Nothing => None,
    };
    let mut pruner = Pruner {
        dry_run,
        report: PruneReport::default(),
    };
    for (name, path, meta) in entries(dir)? {
        if meta.file_type().is_symlink() {
            pruner.report.refused.push(path);
            continue;
        }
        if !meta.is_dir() || !is_sha256_dir(&name) {
            pruner.remove_tree(&path, &meta, None, RemovedKind::Leftover)?;
            continue;
        }
        let kept = keep.as_ref().is_some_and(|k| k.contains(&name));
        let mut emptied = true;
        for (file, p, m) in entries(&path)? {
            let kind = if is_temporary(&file) || !m.is_file() {
                RemovedKind::Leftover
            } else if kept {
                emptied = false;
                continue;
            } else {
                RemovedKind::Unpinned
            };
            emptied &= pruner.remove_tree(&p, &m, Some(&name), kind)?;
        }
        if emptied && !kept && !dry_run {
            std::fs::remove_dir(&path).map_err(io(&path))?;
        }
    }
    let r = &mut pruner.report;
    r.removed.sort_by(|a, b| a.path.cmp(&b.path));
    r.bytes_freed = r.removed.iter().map(|x| x.size).sum();
    Ok(pruner.report)
}

struct Pruner {
    dry_run: bool,
    report: PruneReport,
}

impl Pruner {
    /// Removes `path` (a file, or a directory with everything in it), never following a
    /// link; returns false when a link was refused inside it (so it stays).
    fn remove_tree(
        &mut self,
        path: &Path,
        meta: &std::fs::Metadata,
        sha256: Option<&str>,
        kind: RemovedKind,
    ) -> Result<bool, CacheFilesError> {
        if meta.file_type().is_symlink() {
            self.report.refused.push(path.to_path_buf());
            return Ok(false);
        }
        if meta.is_dir() {
            let mut all = true;
            for (_, p, m) in entries(path)? {
                all &= self.remove_tree(&p, &m, sha256, kind)?;
            }
            if all && !self.dry_run {
                std::fs::remove_dir(path).map_err(io(path))?;
            }
            return Ok(all);
        }
        if !self.dry_run {
            std::fs::remove_file(path).map_err(io(path))?;
        }
        self.report.removed.push(Removed {
            path: path.to_path_buf(),
            sha256: sha256.map(str::to_string),
            size: meta.len(),
            kind,
        });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        kbz_core::shell::sha256_hex(bytes)
    }

    fn put(dir: &Path, sub: &str, file: &str, bytes: &[u8]) -> PathBuf {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).expect("mkdir");
        let p = d.join(file);
        std::fs::write(&p, bytes).expect("write");
        p
    }

    #[test]
    fn an_absent_cache_is_empty() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("cache");
        assert_eq!(list(&dir).expect("list"), Vec::new());
        let r = prune(&dir, &Keep::Nothing, false).expect("prune");
        assert_eq!(r, PruneReport::default());
        assert!(!dir.exists(), "prune must not create the cache");
    }

    #[test]
    fn list_hashes_every_artifact_and_flags_a_damaged_one() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (a, b) = (b"artifact a".as_slice(), b"artifact b, longer".as_slice());
        put(tmp.path(), &sha(a), "a.bin", a);
        put(tmp.path(), &sha(b), "b.whl", b"damaged bytes");
        put(tmp.path(), &sha(a), ".part-x1", b"partial");
        put(tmp.path(), "not-a-sha", "stray", b"x");
        let got = list(tmp.path()).expect("list");
        let rows: Vec<_> = got
            .iter()
            .map(|x| (x.file.as_str(), x.size, x.intact))
            .collect();
        let mut want = vec![("a.bin", 10, true), ("b.whl", 13, false)];
        if sha(b) < sha(a) {
            want.reverse();
        }
        assert_eq!(rows, want);
        assert!(got.iter().all(|x| x.modified.is_some()));
        assert_eq!(
            got[0].path,
            tmp.path().join(&got[0].sha256).join(got[0].file.as_str())
        );
    }

    #[test]
    fn prune_keeps_pinned_artifacts_and_removes_the_rest() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (a, b) = (b"pinned".as_slice(), b"old version".as_slice());
        let kept = put(tmp.path(), &sha(a), "tool", a);
        let old = put(tmp.path(), &sha(b), "tool", b);
        let part = put(tmp.path(), &sha(a), ".part-abc", b"half");
        let pipdir = tmp.path().join(sha(a)).join(".pip-xyz");
        put(&pipdir, "wheels", "patroni.whl", b"wheel");
        let stray = put(tmp.path(), "", "notes.txt", b"??");
        let keep = Keep::Pinned([sha(a).to_uppercase()].into_iter().collect());

        let dry = prune(tmp.path(), &keep, true).expect("dry run");
        assert_eq!(dry.removed.len(), 4, "{dry:?}");
        assert!(
            old.exists() && part.exists() && stray.exists(),
            "a dry run removes nothing"
        );

        let r = prune(tmp.path(), &keep, false).expect("prune");
        assert_eq!(r.removed, dry.removed);
        let gone: Vec<_> = r.removed.iter().map(|x| (x.path.clone(), x.kind)).collect();
        assert!(
            gone.contains(&(old.clone(), RemovedKind::Unpinned)),
            "{gone:?}"
        );
        assert!(
            gone.contains(&(part.clone(), RemovedKind::Leftover)),
            "{gone:?}"
        );
        assert!(
            gone.contains(&(stray.clone(), RemovedKind::Leftover)),
            "{gone:?}"
        );
        assert_eq!(r.bytes_freed, (b.len() + 4 + 5 + 2) as u64);
        assert!(kept.exists(), "the pinned artifact must stay");
        assert!(!old.exists() && !part.exists() && !pipdir.exists() && !stray.exists());
        assert!(
            !tmp.path().join(sha(b)).exists(),
            "its emptied directory goes too"
        );
        assert_eq!(list(tmp.path()).expect("list").len(), 1);

        let all = prune(tmp.path(), &Keep::Nothing, false).expect("prune --all");
        assert_eq!(all.bytes_freed, a.len() as u64);
        assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn prune_refuses_links_out_of_the_cache() {
        let tmp = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("outside");
        let precious = put(outside.path(), "", "precious", b"keep me");
        let cache = tmp.path().join("cache");
        let s = sha(b"x");
        std::fs::create_dir_all(cache.join(&s)).expect("mkdir");
        std::os::unix::fs::symlink(&precious, cache.join(&s).join("tool")).expect("link");
        std::os::unix::fs::symlink(outside.path(), cache.join(sha(b"y"))).expect("link");
        let r = prune(&cache, &Keep::Nothing, false).expect("prune");
        assert_eq!(r.refused.len(), 2, "{r:?}");
        assert!(r.removed.is_empty(), "{r:?}");
        assert!(precious.exists());
        assert_eq!(
            list(&cache).expect("list"),
            Vec::new(),
            "links are not artifacts"
        );
    }
}
