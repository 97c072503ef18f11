//! Every byte a kbz binary prints passes through the secret masker: no `println!`,
//! `print!`, `eprintln!`, `eprint!` or `dbg!` in kbz-cli or any binary's sources (they use
//! `outln!` / `errln!`, which mask every secret and every value derived from one).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_unmasked_print_in_the_binaries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    rust_files(&root.join("crates/cli/src"), &mut files);
    let bins = std::fs::read_dir(root.join("bins")).expect("bins/");
    for b in bins.flatten() {
        rust_files(&b.path().join("src"), &mut files);
    }
    assert!(files.len() > 5, "found only {files:?}");
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for m in ["println!(", "print!(", "eprintln!(", "eprint!(", "dbg!("] {
                let unmasked = code.match_indices(m).any(|(i, _)| {
                    let before = code[..i].chars().last();
                    !matches!(before, Some(c) if c.is_alphanumeric() || c == '_' || c == ':')
                });
                if unmasked {
                    bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "print through kbz_cli::outln!/errln! (secrets masked):\n{}",
        bad.join("\n")
    );
}
