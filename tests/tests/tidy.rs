//! Tidy checks on the documentation: every command docs/*.md, README.md and the error
//! catalogue tell users to run names a binary that exists (each binary's own tests check its
//! subcommands with the real executable, `kbz_testkit::docs::check_subcommands`), no doc
//! repeats a section or a paragraph, and every snapshot file names a test source that exists.

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
