//! Tidy checks on the documentation: every command docs/*.md, README.md and the error
//! catalogue tell users to run names a binary that exists (each binary's own tests check its
//! subcommands with the real executable, `kbz_testkit::docs::check_subcommands`), no doc
//! repeats a section or a paragraph, every snapshot file names a test source that exists and
//! follows the one naming scheme, every component crate lays out its tests the same way
//! (docs/architecture.md, "Tests"), and docs/security.md's port table matches the ports the
//! components declare (the port map `kbz-health ports` checks).

use kbz_testkit::docs::documented_commands;
use kbz_testkit::workspace_root;
use std::collections::BTreeMap;

/// Codes whose fixes name the backup binary of module 9, which is not shipped yet; kbz never
/// emits them (they are in kbz-errors' NOT_YET_EMITTED), so no user is told to run it.
const BACKUP_CODES: std::ops::RangeInclusive<u16> = 41..=50;

#[test]
fn every_documented_command_names_a_binary_that_exists() {
    let root = workspace_root();
    let cmds = documented_commands();
    assert!(cmds.len() > 30, "too few commands found: {cmds:?}");
    let missing: Vec<String> = cmds
        .iter()
        .filter(|c| {
            !root
                .join("bins")
                .join(&c.binary)
                .join("Cargo.toml")
                .is_file()
        })
        .filter(|c| {
            let n = c
                .code
                .as_deref()
                .and_then(|c| c.strip_prefix('E'))
                .and_then(|n| n.parse::<u16>().ok());
            !n.is_some_and(|n| BACKUP_CODES.contains(&n))
        })
        .map(|c| format!("{}: `{} {}`", c.source, c.binary, c.args.join(" ")))
        .collect();
    assert!(
        missing.is_empty(),
        "the docs tell users to run binaries that are not in bins/:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_doc_repeats_a_section_or_a_paragraph() {
    let root = workspace_root();
    let mut files: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root.join("README.md"));
    let mut repeated = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let mut headings = BTreeMap::new();
        let mut paragraphs = BTreeMap::new();
        for l in text.lines().filter(|l| l.starts_with('#')) {
            *headings.entry(l.trim().to_string()).or_insert(0) += 1;
        }
        for p in text.split("\n\n") {
            let p = p.trim();
            // Long prose only: table rows and short lines may repeat on purpose.
            if p.len() > 120 && !p.starts_with('|') && !p.starts_with("```") {
                *paragraphs.entry(p.to_string()).or_insert(0) += 1;
            }
        }
        for (what, n) in headings.iter().chain(paragraphs.iter()) {
            if *n > 1 {
                repeated.push(format!(
                    "{}: {n} times: {}",
                    f.display(),
                    what.chars().take(80).collect::<String>()
                ));
            }
        }
    }
    assert!(
        repeated.is_empty(),
        "repeated sections:\n{}",
        repeated.join("\n")
    );
}

#[test]
fn every_snapshot_file_names_a_test_source_that_exists() {
    // Exact staleness (a snapshot no test asserts) is `cargo xtask stale-snapshots` in
    // .ci/run; this catches the snapshots of a deleted or moved test file without running
    // anything.
    let root = workspace_root();
    let mut dirs = vec![root.join("crates"), root.join("tests"), root.join("xtask")];
    let mut bad = Vec::new();
    let mut seen = 0;
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "snap") {
                seen += 1;
                let text = std::fs::read_to_string(&p).expect("snap");
                let source = text
                    .lines()
                    .find_map(|l| l.strip_prefix("source: "))
                    .map(str::trim);
                match source {
                    Some(s) if root.join(s).is_file() => {}
                    other => bad.push(format!("{}: source {other:?}", p.display())),
                }
            }
        }
    }
    assert!(seen > 20, "found only {seen} snapshot files");
    assert!(
        bad.is_empty(),
        "snapshots of missing tests:\n{}",
        bad.join("\n")
    );
}

/// Every `.snap` file below `crates/`, `tests/` and `xtask/`.
fn snapshot_files() -> Vec<std::path::PathBuf> {
    let root = workspace_root();
    let mut dirs = vec![root.join("crates"), root.join("tests"), root.join("xtask")];
    let mut found = Vec::new();
    while let Some(d) = dirs.pop() {
        if d.ends_with("target") {
            continue;
        }
        for e in std::fs::read_dir(&d).expect("read").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "snap") {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// Snapshot scopes that are not hosts, per crate: kbz-notify's payloads are per channel.
const NON_HOST_SCOPES: &[(&str, &[&str])] = &[(
    "crates/notify",
    &["slack", "discord", "telegram", "webhook"],
)];

/// Why `path` breaks the scheme of docs/architecture.md "Tests", or `None` when it follows it:
/// `<crate>/tests/it/snapshots/it__<module>__<scope>__<subject>.snap` (or, in a crate whose
/// test binaries are single files, `<crate>/tests/snapshots/<binary>__<scope>__<subject>.snap`)
/// where `tests/it/<module>.rs` (or `tests/<binary>.rs`) exists, scope is an example-inventory
/// host, `fleet`, or a listed non-host scope of the crate, and subject is lowercase
/// `[a-z0-9._-]` (a flattened file path or a label, `kbz_testkit::snapshot_name`).
fn snapshot_name_problem(path: &std::path::Path, hosts: &[String]) -> Option<String> {
    let root = workspace_root().canonicalize().expect("root");
    let dir = path.parent()?;
    if !dir.ends_with("snapshots") {
        return Some("not in a snapshots/ directory".into());
    }
    let tests = dir.parent()?;
    let stem = path.file_stem()?.to_str()?;
    let parts: Vec<&str> = stem.split("__").collect();
    let (source, rest) = if tests.ends_with("tests/it") {
        if parts.len() < 2 || parts[0] != "it" {
            return Some("a snapshot of tests/it/ is named it__<module>__...".into());
        }
        (tests.join(format!("{}.rs", parts[1])), &parts[2..])
    } else if tests.ends_with("tests") {
        (tests.join(format!("{}.rs", parts[0])), &parts[1..])
    } else {
        return Some("not in <crate>/tests/snapshots or <crate>/tests/it/snapshots".into());
    };
    if !source.is_file() {
        return Some(format!("no test source {}", source.display()));
    }
    let [scope, subject] = rest else {
        return Some(format!(
            "want <scope>__<subject> after the test source, found {rest:?}"
        ));
    };
    let krate = tests
        .ancestors()
        .find(|a| a.join("Cargo.toml").is_file())
        .and_then(|a| a.strip_prefix(&root).ok())
        .map(|a| a.display().to_string())
        .unwrap_or_default();
    let non_host = NON_HOST_SCOPES
        .iter()
        .filter(|(c, _)| *c == krate)
        .flat_map(|(_, s)| s.iter());
    let scope_ok = *scope == "fleet"
        || hosts.iter().any(|h| h == scope)
        || non_host.into_iter().any(|s| s == scope);
    if !scope_ok {
        return Some(format!(
            "scope `{scope}` is neither an example host, `fleet` nor a listed scope of {krate}"
        ));
    }
    let subject_ok = subject
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && subject
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !subject_ok {
        return Some(format!("subject `{subject}` is not lowercase [a-z0-9._-]"));
    }
    None
}

#[test]
fn every_snapshot_follows_the_naming_scheme() {
    let hosts: Vec<String> = kbz_testkit::example_inventory()
        .hosts
        .iter()
        .map(|h| h.hostname.clone())
        .collect();
    let root = workspace_root().canonicalize().expect("root");
    let files = snapshot_files();
    assert!(
        files.len() > 20,
        "found only {} snapshot files",
        files.len()
    );
    let bad: Vec<String> = files
        .iter()
        .filter_map(|p| {
            let p = p.canonicalize().expect("canonical");
            let why = snapshot_name_problem(&p, &hosts)?;
            Some(format!(
                "{}: {why}",
                p.strip_prefix(&root).unwrap_or(&p).display()
            ))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "snapshots off the scheme of docs/architecture.md \"Tests\":\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_snapshot_scheme_rejects_the_old_names() {
    let hosts = vec!["db1".to_string(), "lb1".to_string()];
    let root = workspace_root().canonicalize().expect("root");
    let at = |p: &str| root.join(p);
    let etcd = "crates/components/etcd/tests/it/snapshots";
    assert_eq!(
        snapshot_name_problem(&at(&format!("{etcd}/it__render__db1__files.snap")), &hosts),
        None
    );
    for (old, why) in [
        // The second scheme: component, "files" and the host joined by single underscores.
        (
            format!("{etcd}/it__render__etcd_files_db1.snap"),
            "want <scope>__<subject>",
        ),
        (
            format!("{etcd}/render__etcd_files_db1.snap"),
            "it__<module>",
        ),
        (format!("{etcd}/it__render__db9__files.snap"), "scope `db9`"),
        (
            format!("{etcd}/it__nosuch__db1__files.snap"),
            "no test source",
        ),
        (
            format!("{etcd}/it__render__db1__Files.snap"),
            "subject `Files`",
        ),
        (
            "crates/components/etcd/tests/snapshots/render__db1__files.snap".to_string(),
            "no test source",
        ),
    ] {
        let got = snapshot_name_problem(&at(&old), &hosts).unwrap_or_default();
        assert!(got.contains(why), "{old}: {got:?}");
    }
}

/// The files a component crate's tests/it/ may hold (docs/architecture.md, "Tests").
const COMPONENT_TEST_MODULES: &[&str] = &["main", "common", "render", "engine", "loopback"];

#[test]
fn every_component_crate_lays_out_its_tests_the_same_way() {
    let components = workspace_root().join("crates/components");
    let mut bad = Vec::new();
    let mut seen = 0;
    for c in std::fs::read_dir(&components).expect("read").flatten() {
        let tests = c.path().join("tests");
        if !tests.exists() {
            continue;
        }
        seen += 1;
        let name = c.file_name().to_string_lossy().into_owned();
        let top: Vec<String> = std::fs::read_dir(&tests)
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if top != ["it"] {
            bad.push(format!("{name}/tests holds {top:?}, want only it/"));
            continue;
        }
        let it = tests.join("it");
        if !it.join("main.rs").is_file() {
            bad.push(format!("{name}/tests/it has no main.rs"));
        }
        for e in std::fs::read_dir(&it).expect("read").flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f == "snapshots" {
                continue;
            }
            let module = f.strip_suffix(".rs").unwrap_or(&f);
            if !COMPONENT_TEST_MODULES.contains(&module) || e.path().is_dir() {
                bad.push(format!(
                    "{name}/tests/it/{f}: want one of {COMPONENT_TEST_MODULES:?} (.rs)"
                ));
                continue;
            }
            let text = std::fs::read_to_string(e.path()).expect("read");
            if text.contains("#[path") {
                bad.push(format!("{name}/tests/it/{f}: #[path] module"));
            }
            if !text.starts_with("//!") {
                bad.push(format!("{name}/tests/it/{f}: no //! header"));
            }
        }
    }
    assert!(seen >= 6, "found only {seen} component test crates");
    assert!(bad.is_empty(), "off the one layout:\n{}", bad.join("\n"));
}

/// Every `.rs` file below `crates/`, `bins/`, `examples/`, `tests/` and `xtask/` (not
/// `target/`).
fn rust_sources() -> Vec<std::path::PathBuf> {
    let root = workspace_root();
    let mut dirs = vec![
        root.join("crates"),
        root.join("bins"),
        root.join("examples"),
        root.join("tests"),
        root.join("xtask"),
    ];
    let mut found = Vec::new();
    while let Some(d) = dirs.pop() {
        if d.ends_with("target") {
            continue;
        }
        for e in std::fs::read_dir(&d).expect("read").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn package_resources_are_built_with_package_and_absent_package() {
    // `Resource::package(name)` / `Resource::absent_package(name)`, never the literal with
    // `present: true/false` (kbz-core's resource.rs, which defines them, excepted).
    let mut found = Vec::new();
    for p in rust_sources() {
        if p.ends_with("crates/core/src/resource.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read");
        let mut rest = text.as_str();
        while let Some(i) = rest.find("Package {") {
            let body = &rest[i..];
            let end = body.find('}').unwrap_or(body.len());
            let inner = &body[..end];
            if inner.contains("present: true") || inner.contains("present: false") {
                let line = text[..text.len() - rest.len() + i].lines().count();
                found.push(format!("{}:{line}", p.display()));
            }
            rest = &body[end.min(body.len())..];
            if rest.len() == body.len() {
                break;
            }
        }
    }
    assert!(
        found.is_empty(),
        "use Resource::package / Resource::absent_package:\n{}",
        found.join("\n")
    );
}

#[test]
fn codes_are_written_as_code_values_not_string_literals() {
    // `Code::E002`, never `"E002"`: a literal is not checked by the compiler. kbz-errors
    // parses codes from text (explain), and the binaries' black-box tests read printed
    // output, so both may spell codes as text.
    let root = workspace_root();
    let mut dirs = vec![root.join("crates"), root.join("tests"), root.join("xtask")];
    let mut found = Vec::new();
    while let Some(d) = dirs.pop() {
        if d.ends_with("crates/errors") || d.ends_with("target") {
            continue;
        }
        for e in std::fs::read_dir(&d).expect("read").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("read");
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                let b = line.as_bytes();
                let hit = (0..b.len().saturating_sub(5)).any(|i| {
                    b[i] == b'"'
                        && b[i + 1] == b'E'
                        && b[i + 2..i + 5].iter().all(u8::is_ascii_digit)
                        && b[i + 5] == b'"'
                });
                if hit {
                    found.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "write these codes as Code::Exxx:\n{}",
        found.join("\n")
    );
}

/// The port map kbz checks (`Component::listens` of every component on the example fleet)
/// and docs/security.md's port table say the same: each listened port has a row of its
/// module (`5 postgres`) with that port, and the row names loopback exactly when the
/// component binds it.
#[test]
fn the_port_map_matches_the_port_table_of_docs_security() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/security.md")).expect("doc");
    // (module column, address column, port column) of each table row.
    let rows: Vec<(String, String, String)> = doc
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split('|').map(str::trim).collect();
            (c.len() > 5 && c[1].chars().next().is_some_and(|ch| ch.is_ascii_digit()))
                .then(|| (c[1].to_string(), c[3].to_string(), c[4].to_string()))
        })
        .collect();
    assert!(rows.len() > 10, "no port table found: {rows:?}");
    let has_port = |col: &str, port: u16| {
        col.split(|ch: char| !ch.is_ascii_digit() && ch != '-')
            .filter(|w| !w.is_empty())
            .any(|w| match w.split_once('-') {
                Some((a, b)) => match (a.parse::<u16>(), b.parse::<u16>()) {
                    (Ok(a), Ok(b)) => (a..=b).contains(&port),
                    _ => false,
                },
                None => w.parse::<u16>() == Ok(port),
            })
    };
    let ctx = kbz_testkit::example_context(
        kbz_stack::components()
            .iter()
            .flat_map(|c| c.secret_names()),
    );
    let mut missing = Vec::new();
    for c in kbz_stack::components() {
        let module = format!("{} {}", c.module(), c.name());
        for host in ctx.inventory.hosts.iter().filter(|h| c.applies_to(h)) {
            for l in c.listens(&ctx, host) {
                let loopback = l.addrs.iter().any(|a| a.is_loopback());
                let found = rows.iter().any(|(m, addr, ports)| {
                    m == &module
                        && has_port(ports, l.port)
                        && addr.contains("127.0.0.1") == loopback
                });
                if !found {
                    missing.push(format!(
                        "{module}: {} on port {} ({})",
                        l.service,
                        l.port,
                        if loopback {
                            "with 127.0.0.1"
                        } else {
                            "no loopback"
                        }
                    ));
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "docs/security.md's port table lacks these rows (module, port, loopback as bound):\n{}",
        missing.join("\n")
    );
}
