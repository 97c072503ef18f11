//! Tidy checks on the error catalogue: every code documented, unique, listed in
//! docs/errors.md, and emitted by non-test code (or named in `NOT_YET_EMITTED`).

use kbz_errors::{explain, parse_code, Code, CATALOGUE};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Codes no non-test code references yet. The list only shrinks: when a component starts
/// emitting a code, remove it here (the test fails until you do).
const NOT_YET_EMITTED: &[&str] = &["E054", "E055", "E057", "E058", "E060"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_code_is_documented_once_and_in_order() {
    let codes: Vec<Code> = CATALOGUE.iter().map(|e| e.code).collect();
    assert_eq!(
        codes,
        Code::ALL,
        "CATALOGUE must list every code once, in order"
    );
    // Each range is filled from its start: E001-E068 (operations so far), E071 on (failover).
    let numbers: Vec<u16> = codes.iter().map(|c| c.number()).collect();
    let expected: Vec<u16> = (1..=68).chain(71..=72).chain(76..=81).collect();
    assert_eq!(numbers, expected, "a range has a hole");
    for entry in CATALOGUE.iter() {
        let expected = entry.code.to_string();
        assert_eq!(expected, format!("E{:03}", entry.code.number()));
        assert!(!entry.title.trim().is_empty(), "{expected}: empty title");
        assert!(
            !entry.category.trim().is_empty(),
            "{expected}: empty category"
        );
        assert!(
            entry.explanation.chars().count() >= 80,
            "{expected}: explanation shorter than 80 characters"
        );
        assert!(
            entry.solutions.len() >= 2,
            "{expected}: needs at least 2 numbered solutions"
        );
        for s in entry.solutions {
            assert!(!s.trim().is_empty(), "{expected}: empty solution");
        }
    }
}

#[test]
fn categories_follow_the_code_ranges() {
    for entry in CATALOGUE {
        let expected = match entry.code.number() {
            1..=10 => "general",
            11..=20 => "network",
            21..=30 => "resources",
            31..=40 => "components",
            41..=50 => "backup",
            51..=60 => "security",
            61..=65 => "kubernetes",
            66..=70 => "operations",
            71..=75 => "failover",
            _ => "preflight",
        };
        assert_eq!(entry.category, expected, "{}", entry.code);
    }
}

#[test]
fn titles_are_unique() {
    let mut seen = BTreeMap::new();
    for entry in CATALOGUE {
        if let Some(other) = seen.insert(entry.title.to_lowercase(), entry.code) {
            panic!(
                "{} and {} share the title `{}`",
                other, entry.code, entry.title
            );
        }
    }
}

/// Collects `Code::E0NN` references from non-test Rust source under `dir`: `tests/`
/// directories, comment lines and everything from a `#[cfg(test)]` line on are skipped.
fn scan(root: &Path, dir: &Path, skip: &Path, found: &mut BTreeMap<String, BTreeSet<String>>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name == "tests" || name == "target" || name.starts_with('.') {
                continue;
            }
            scan(root, &path, skip, found);
        } else if name.ends_with(".rs") {
            let is_skipped = fs::canonicalize(&path).ok() == fs::canonicalize(skip).ok();
            if is_skipped {
                continue;
            }
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            let shown = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            for line in text.lines() {
                if line.contains("#[cfg(test)]") {
                    break;
                }
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for code in code_refs(line) {
                    found.entry(code).or_default().insert(shown.clone());
                }
            }
        }
    }
}

/// The `E0NN` of every `Code::E0NN` in a line (followed by a non-identifier character).
fn code_refs(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("Code::E") {
        let after = &rest[i + "Code::".len()..];
        let ident: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.len() == 4 && ident[1..].chars().all(|c| c.is_ascii_digit()) {
            out.push(ident);
        }
        rest = &rest[i + 1..];
    }
    out
}

#[test]
fn code_refs_finds_qualified_references() {
    assert_eq!(code_refs("x => kbz_errors::Code::E020,"), ["E020"]);
    assert_eq!(code_refs("(Code::E001, Code::E060)"), ["E001", "E060"]);
    assert!(code_refs("Code::E0012 Code::Exx ErrorCode::").is_empty());
}

#[test]
fn every_code_is_emitted_or_listed_as_not_yet_emitted() {
    println!(
        "NOT_YET_EMITTED ({} codes): {}",
        NOT_YET_EMITTED.len(),
        NOT_YET_EMITTED.join(", ")
    );
    let root = workspace_root();
    let catalogue_rs = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/catalogue.rs");
    let mut found = BTreeMap::new();
    for top in ["crates", "bins"] {
        scan(&root, &root.join(top), &catalogue_rs, &mut found);
    }

    let listed: BTreeSet<&str> = NOT_YET_EMITTED.iter().copied().collect();
    assert_eq!(
        listed.len(),
        NOT_YET_EMITTED.len(),
        "NOT_YET_EMITTED has duplicates"
    );
    let mut problems = Vec::new();
    for code in &listed {
        if parse_code(code).map(|c| c.to_string()).as_deref() != Some(*code) {
            problems.push(format!("{code} in NOT_YET_EMITTED is not a catalogue code"));
        }
    }
    for entry in CATALOGUE {
        let code = entry.code.to_string();
        match (found.get(&code), listed.contains(code.as_str())) {
            (Some(files), true) => problems.push(format!(
                "{code} is now emitted (in {}): remove it from NOT_YET_EMITTED",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
            (None, false) => problems.push(format!(
                "{code} is referenced by no non-test code: emit it as `Code::{code}` or add it \
                 to NOT_YET_EMITTED"
            )),
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The table docs/errors.md must contain, one row per code.
fn expected_rows() -> Vec<String> {
    CATALOGUE
        .iter()
        .map(|e| format!("| {} | {} | {} |", e.code, e.category, e.title))
        .collect()
}

#[test]
fn docs_list_every_code_and_title() {
    let path = workspace_root().join("docs/errors.md");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let rows: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("| E0"))
        .map(String::from)
        .collect();
    let expected = expected_rows();
    assert!(
        rows == expected,
        "docs/errors.md is out of date; its table rows must be exactly:\n{}",
        expected.join("\n")
    );
}

#[test]
fn explain_renders_every_entry_with_numbered_solutions() {
    for entry in CATALOGUE {
        let text = explain(&entry.code.to_string()).expect("catalogue code");
        assert!(text.starts_with(&format!(
            "{} ({}): {}",
            entry.code, entry.category, entry.title
        )));
        for i in 1..=entry.solutions.len() {
            assert!(
                text.contains(&format!("  {i}. ")),
                "{}: solution {i}",
                entry.code
            );
        }
    }
}
