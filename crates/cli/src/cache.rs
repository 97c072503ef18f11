//! The controller's download cache as kbz-install uses it: where it is
//! (`<state dir>/cache`), the pins the current inventory and config reference, fetching
//! them all before a run changes hosts, and the `kbz-install cache list | prune` commands.

use kbz_core::artifact::ArtifactPin;
use kbz_core::backup::repo::human;
use kbz_core::{Component, Context, Resource};
use kbz_errors::HasCode;
use kbz_exec::cache_files::{self, CachedArtifact, Keep, RemovedKind};
use kbz_exec::DownloadCache;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::session::{self, prepare, Session};
use crate::{exit, ui, Common, Failure};

/// The download cache directory of a state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("cache")
}

/// The download cache the install (and the menu's install) fetches pinned artifacts into:
/// [`dir`] of the state directory. `None` when its HTTP client cannot be built (a run that
/// then needs an artifact fails with its own E028).
pub fn open(state_dir: &Path) -> Option<DownloadCache> {
    DownloadCache::new(dir(state_dir)).ok()
}

/// Every pin the components' desired resources reference on the hosts they apply to
/// (artifacts that must be present), once each, sorted by name.
pub fn pins(ctx: &Context, components: &[Arc<dyn Component>]) -> Result<Vec<ArtifactPin>, Failure> {
    let mut out: Vec<ArtifactPin> = Vec::new();
    for comp in components {
        for host in ctx.inventory.hosts.iter().filter(|h| comp.applies_to(h)) {
            let desired = comp
                .desired(ctx, host)
                .map_err(|e| Failure::input(vec![e.to_diagnostic()]))?;
            for r in desired {
                if let Resource::Artifact {
                    pin, present: true, ..
                } = r
                {
                    if !out.contains(&pin) {
                        out.push(pin);
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.name, &a.sha256).cmp(&(&b.name, &b.sha256)));
    Ok(out)
}

/// Fetches every pin into `cache` ([`DownloadCache::fetch_all`], a few at a time) before a
/// run changes any host, so the run's hosts find them cached; a failure names each artifact
/// that could not be fetched (exit [`exit::FAILED`], nothing was changed).
pub fn prefetch(
    rt: &tokio::runtime::Handle,
    cache: &DownloadCache,
    pins: &[ArtifactPin],
) -> Result<(), Failure> {
    if pins.is_empty() {
        return Ok(());
    }
    tracing::info!(artifacts = pins.len(), "fetching pinned artifacts");
    rt.block_on(cache.fetch_all(pins)).map(|_| ()).map_err(|failed| {
        for f in &failed {
            tracing::error!(artifact = %f.name, error = %f, "artifact not fetched");
        }
        Failure {
            diagnostics: failed
                .iter()
                .map(|f| {
                    f.to_diagnostic()
                        .hint("nothing was changed on the hosts; fix the pin or the network and run again")
                })
                .collect(),
            exit: exit::FAILED,
        }
    })
}

/// The sha256 -> `[artifacts.NAME]` names of everything the current inventory and config
/// pin: the components' pins and every `[artifacts.NAME]` entry of kbz.toml.
fn pinned_names(s: &Session) -> Result<BTreeMap<String, String>, Failure> {
    let mut names = BTreeMap::new();
    for p in pins(&s.ctx, &kbz_stack::components())? {
        names.entry(p.sha256.to_ascii_lowercase()).or_insert(p.name);
    }
    for (name, o) in &s.inputs.config.artifacts {
        names
            .entry(o.sha256.trim().to_ascii_lowercase())
            .or_insert_with(|| name.clone());
    }
    Ok(names)
}

/// Inputs, the cache directory (`None`: the bundled example has no state directory) and the
/// pinned names, for `cache list` and `cache prune`.
fn load(g: &Common) -> Result<(Option<PathBuf>, BTreeMap<String, String>), Failure> {
    let components = kbz_stack::components();
    let s = prepare(g, "kbz-install", &components, session::Secrets::InMemory)?;
    let names = pinned_names(&s)?;
    Ok((s.inputs.state_dir.as_deref().map(dir), names))
}

fn files_failure(e: &cache_files::CacheFilesError) -> Failure {
    Failure::new(e.to_diagnostic(), exit::FAILED)
}

fn when(a: &CachedArtifact) -> Option<chrono::DateTime<chrono::Utc>> {
    a.modified.map(chrono::DateTime::<chrono::Utc>::from)
}

/// `kbz-install cache list [--json]`: every cached artifact with the pin it belongs to
/// (`unpinned` when the current config pins it nowhere), its file, size, sha256, whether its
/// bytes still match that sha256, and when it was last modified; the total size last.
pub fn list(g: &Common) -> u8 {
    let (dir, names) = match load(g) {
        Ok(x) => x,
        Err(f) => return f.report(g.json),
    };
    let artifacts = match dir.as_deref().map(cache_files::list).transpose() {
        Ok(a) => a.unwrap_or_default(),
        Err(e) => return files_failure(&e).report(g.json),
    };
    let name = |a: &CachedArtifact| {
        names
            .get(&a.sha256)
            .cloned()
            .unwrap_or_else(|| "unpinned".into())
    };
    let total: u64 = artifacts.iter().map(|a| a.size).sum();
    if g.json {
        let rows: Vec<_> = artifacts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": name(a),
                    "file": a.file,
                    "path": a.path.display().to_string(),
                    "size": a.size,
                    "sha256": a.sha256,
                    "intact": a.intact,
                    "modified": when(a).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                })
            })
            .collect();
        let v = serde_json::json!({
            "dir": dir.as_ref().map(|d| d.display().to_string()),
            "artifacts": rows,
            "total_bytes": total,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return exit::OK;
    }
    let Some(dir) = dir else {
        crate::outln!(
            "The bundled example has no state directory, so no download cache (pass --inventory)."
        );
        return exit::OK;
    };
    if artifacts.is_empty() {
        crate::outln!("The download cache {} is empty.", dir.display());
        return exit::OK;
    }
    let rows: Vec<Vec<String>> = artifacts
        .iter()
        .map(|a| {
            vec![
                name(a),
                a.file.clone(),
                human(a.size),
                when(a)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "-".into()),
                if a.intact { "yes" } else { "NO: damaged" }.into(),
                a.sha256.clone(),
            ]
        })
        .collect();
    crate::outln!("download cache {}", dir.display());
    ui::table(
        &["NAME", "FILE", "SIZE", "MODIFIED (UTC)", "INTACT", "SHA256"],
        &rows,
    );
    let damaged = artifacts.iter().filter(|a| !a.intact).count();
    crate::outln!(
        "total: {} in {} artifact(s){}",
        human(total),
        artifacts.len(),
        if damaged > 0 {
            format!("; {damaged} damaged (fetched again when needed, or `kbz-install cache prune --all`)")
        } else {
            String::new()
        }
    );
    exit::OK
}

/// `kbz-install cache prune [--all] [--dry-run]`: removes every cached artifact that no pin
/// of the current inventory and config references (with `all`: every artifact) and every
/// temporary or partial file; prints what went and the bytes freed. Symbolic links in the
/// cache are refused (left in place, with a warning), never followed.
pub fn prune(g: &Common, all: bool, dry_run: bool) -> u8 {
    let (dir, names) = match load(g) {
        Ok(x) => x,
        Err(f) => return f.report(g.json),
    };
    let keep = if all {
        Keep::Nothing
    } else {
        Keep::Pinned(names.keys().cloned().collect())
    };
    let report = match dir
        .as_deref()
        .map(|d| cache_files::prune(d, &keep, dry_run))
        .transpose()
    {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => return files_failure(&e).report(g.json),
    };
    tracing::info!(
        dry_run,
        all,
        removed = report.removed.len(),
        bytes = report.bytes_freed,
        "cache prune"
    );
    let kind = |k: RemovedKind| match k {
        RemovedKind::Unpinned => "unpinned",
        RemovedKind::Leftover => "leftover",
    };
    if g.json {
        let removed: Vec<_> = report
            .removed
            .iter()
            .map(|r| {
                serde_json::json!({
                    "path": r.path.display().to_string(),
                    "sha256": r.sha256,
                    "size": r.size,
                    "kind": kind(r.kind),
                })
            })
            .collect();
        let refused: Vec<_> = report
            .refused
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let v = serde_json::json!({
            "dir": dir.as_ref().map(|d| d.display().to_string()),
            "dry_run": dry_run,
            "removed": removed,
            "refused": refused,
            "bytes_freed": report.bytes_freed,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return exit::OK;
    }
    for p in &report.refused {
        crate::errln!(
            "warning: {} is a symbolic link: kbz never follows links out of its cache, so it stays (remove it yourself)",
            p.display()
        );
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    let rows: Vec<Vec<String>> = report
        .removed
        .iter()
        .map(|r| {
            vec![
                verb.to_string(),
                kind(r.kind).to_string(),
                human(r.size),
                r.path.display().to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        ui::table(&["ACTION", "WHY", "SIZE", "PATH"], &rows);
    }
    let freed = if dry_run { "would free" } else { "freed" };
    crate::outln!(
        "{freed} {} ({} bytes) in {} file(s)",
        human(report.bytes_freed),
        report.bytes_freed,
        report.removed.len()
    );
    exit::OK
}

#[cfg(test)]
mod tests {
    use crate::session::{prepare, Secrets};

    #[test]
    fn the_example_fleet_pins_its_artifacts_once_each() {
        let components = kbz_stack::components();
        let s = prepare(
            &crate::Common::default(),
            "test",
            &components,
            Secrets::InMemory,
        )
        .expect("bundled example");
        let pins = super::pins(&s.ctx, &components).expect("pins");
        let names: Vec<&str> = pins.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"patroni"), "{names:?}");
        // The example installs Rancher, whose chart upstream publishes no sha256 for: the
        // install's prefetch refuses it (E030) before any host changes.
        let unpinned: Vec<_> = pins.iter().filter(|p| p.sha256.is_empty()).collect();
        assert_eq!(unpinned.len(), 1, "{unpinned:?}");
        let rt = crate::runtime().expect("runtime");
        let dir = tempfile::tempdir().expect("tmp");
        let cache = kbz_exec::DownloadCache::new(dir.path()).expect("cache");
        let f = super::prefetch(rt.handle(), &cache, &[unpinned[0].clone()])
            .expect_err("no sha256 pinned");
        assert_eq!(f.exit, crate::exit::FAILED);
        assert_eq!(f.diagnostics.len(), 1);
        assert_eq!(f.diagnostics[0].code, kbz_errors::Code::E030);
        assert!(f.to_string().contains("artifact rancher: "), "{f}");
        assert!(super::prefetch(rt.handle(), &cache, &[]).is_ok());
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(unique, names, "each pin once, sorted");
        let only_base: Vec<_> = components
            .iter()
            .filter(|c| c.name() == "base")
            .cloned()
            .collect();
        assert_eq!(super::pins(&s.ctx, &only_base).expect("pins"), Vec::new());
    }
}
