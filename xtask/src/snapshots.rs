//! `cargo xtask stale-snapshots REFS`: after `cargo test --workspace` ran with
//! `INSTA_SNAPSHOT_REFERENCES_FILE=REFS` (insta appends every snapshot file a test asserts
//! against), lists the `.snap` files of the workspace no test used and fails when there are
//! any: the plain-cargo equivalent of `cargo insta test --unreferenced=reject`, run by
//! `.ci/run`.

use anyhow::{Context, Result};
use fs_err as fs;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `stale-snapshots` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file insta wrote the used snapshots to (`INSTA_SNAPSHOT_REFERENCES_FILE`).
    refs: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().context("workspace root")?;
    let refs = fs::read_to_string(&args.refs)?;
    let stale = stale(&root, &refs)?;
    if stale.is_empty() {
        println!("every snapshot file is used by a test");
        return Ok(ExitCode::SUCCESS);
    }
    println!("snapshot files no test uses (delete them, or restore the test that wrote them):");
    for s in &stale {
        println!("  {}", s.display());
    }
    Ok(ExitCode::FAILURE)
}

/// The `.snap` files under `root` (outside `target/`) that `refs` does not name.
pub fn stale(root: &Path, refs: &str) -> Result<Vec<PathBuf>> {
    let used: BTreeSet<PathBuf> = refs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let p = PathBuf::from(l.trim());
            p.canonicalize().unwrap_or(p)
        })
        .collect();
    let mut all = Vec::new();
    collect(root, &mut all)?;
    Ok(all
        .into_iter()
        .filter(|p| !used.contains(p))
        .map(|p| p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p))
        .collect())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect(&path, out)?;
            }
        } else if name.ends_with(".snap") {
            out.push(path.canonicalize().unwrap_or(path));
        }
    }
    out.sort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreferenced_snapshot_files_are_listed_and_target_is_skipped() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().canonicalize().expect("root");
        for f in [
            "crates/a/tests/snapshots/render__used.snap",
            "crates/a/tests/snapshots/render__gone.snap",
            "target/debug/x.snap",
            "crates/a/tests/snapshots/render__new.snap.new",
        ] {
            let p = root.join(f);
            fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
            fs::write(&p, "---\n").expect("write");
        }
        let refs = format!(
            "{}\n{}\n",
            root.join("crates/a/tests/snapshots/render__used.snap")
                .display(),
            root.join("crates/a/tests/snapshots/render__used.snap")
                .display()
        );
        assert_eq!(
            stale(&root, &refs).expect("stale"),
            vec![PathBuf::from("crates/a/tests/snapshots/render__gone.snap")]
        );
    }
}
