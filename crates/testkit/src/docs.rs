//! The commands kbz's documentation tells users to run: every `kbz-…` command in a backtick
//! span or a `$ ` console line of docs/*.md and README.md, and in the error catalogue's
//! explanations and fixes (crates/errors/src/catalogue.rs, with the code each belongs to).
//! The tidy tests check that each names a binary in bins/ and that its subcommands exist
//! (`check_subcommands`, run by each binary's own tests with the real executable).

use std::path::Path;
use std::process::Command;

use crate::workspace_root;

/// One command the docs tell users to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocCommand {
    /// Where: the file, and for the catalogue the code (`crates/errors/src/catalogue.rs E041`).
    pub source: String,
    /// The catalogue entry's code, for commands from the catalogue.
    pub code: Option<String>,
    /// The binary (`kbz-install`).
    pub binary: String,
    /// The words after it, up to a shell separator (`|`, `;`, `&&`, `||`, `>`).
    pub args: Vec<String>,
}

impl DocCommand {
    /// The subcommand path: the leading words that are neither flags, values of a flag,
    /// placeholders (`SCENARIO`, `E002`, `N`) nor paths. `install|remove` is two alternatives,
    /// so this returns every path.
    pub fn subcommand_paths(&self) -> Vec<Vec<String>> {
        let mut paths = vec![Vec::new()];
        for w in &self.args {
            let word = w.trim_matches(|c| c == '`' || c == '\'' || c == '"');
            let is_word = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-' || c == '|')
                && !word.starts_with('-');
            if !is_word {
                break;
            }
            let alts: Vec<&str> = word.split('|').filter(|a| !a.is_empty()).collect();
            paths = paths
                .into_iter()
                .flat_map(|p| {
                    alts.iter().map(move |a| {
                        let mut q = p.clone();
                        q.push(a.to_string());
                        q
                    })
                })
                .collect();
        }
        paths
    }
}

/// Tokens that introduce a command inside a span.
const COMMAND_STARTERS: &[&str] = &["$", "|", "||", "&&", ";", "sudo", "then", "do", "or"];

/// The commands of one text (`source` names it), spans taken from backticks and `$ ` lines.
pub fn commands_in(source: &str, text: &str, code: Option<&str>) -> Vec<DocCommand> {
    // Fenced blocks are read for their `$ ` lines only; the rest for its inline spans.
    let mut prose = String::new();
    let mut fenced = false;
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(l);
            prose.push('\n');
        }
    }
    let mut spans: Vec<&str> = prose.split('`').skip(1).step_by(2).collect();
    spans.extend(
        text.lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with("$ ")),
    );
    let mut out = Vec::new();
    for span in spans {
        let words: Vec<&str> = span.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let is_name = w.starts_with("kbz-")
                && w.len() > 4
                && w[4..].chars().all(|c| c.is_ascii_lowercase());
            if !is_name || (i > 0 && !COMMAND_STARTERS.contains(&words[i - 1])) {
                continue;
            }
            let args = words[i + 1..]
                .iter()
                .take_while(|a| !["|", "||", "&&", ";", ">", ">>", "2>&1"].contains(a))
                .map(|a| a.to_string())
                .collect();
            out.push(DocCommand {
                source: source.into(),
                code: code.map(String::from),
                binary: w.to_string(),
                args,
            });
        }
    }
    out
}

/// The names of the workspace's library packages (`kbz-core`, ...): a span naming one is a
/// crate, not a command.
pub fn library_packages() -> Vec<String> {
    let root = workspace_root();
    let mut names = Vec::new();
    let mut dirs = vec![root.join("crates")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read crates/").flatten() {
            let p = e.path();
            if p.join("Cargo.toml").is_file() {
                let text = std::fs::read_to_string(p.join("Cargo.toml")).expect("Cargo.toml");
                if let Some(n) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("name = \""))
                    .and_then(|l| l.strip_suffix('"'))
                {
                    names.push(n.to_string());
                }
            } else if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    names.sort();
    names
}

/// Every command docs/*.md, README.md and the error catalogue tell users to run (library
/// package names excluded).
pub fn documented_commands() -> Vec<DocCommand> {
    let root = workspace_root();
    let libs = library_packages();
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files.push(root.join("README.md"));
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read doc");
        let shown = f.strip_prefix(&root).unwrap_or(&f).display().to_string();
        out.extend(commands_in(&shown, &text, None));
    }
    // The catalogue's Rust strings, with their line continuations joined, entry by entry.
    let cat =
        std::fs::read_to_string(root.join("crates/errors/src/catalogue.rs")).expect("catalogue");
    let mut joined = String::new();
    let mut chars = cat.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'\n') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            joined.push(c);
        }
    }
    for entry in joined.split("Code::E").skip(1) {
        let code = format!("E{}", &entry[..entry.len().min(3)]);
        let source = format!("crates/errors/src/catalogue.rs {code}");
        out.extend(commands_in(&source, entry, Some(&code)));
    }
    out.retain(|c| !libs.contains(&c.binary));
    out
}

/// Runs `exe` (the binary `name`) with each documented command's subcommand path and
/// `--help`: clap accepts it only when every subcommand exists. Panics listing each
/// documented command that does not.
pub fn check_subcommands(exe: &Path, name: &str) {
    let mut bad = Vec::new();
    let mut checked = 0;
    for c in documented_commands().iter().filter(|c| c.binary == name) {
        for path in c.subcommand_paths() {
            checked += 1;
            let out = Command::new(exe)
                .args(&path)
                .arg("--help")
                .output()
                .expect("run the binary");
            if !out.status.success() {
                bad.push(format!(
                    "{}: `{name} {}` ({}): {}",
                    c.source,
                    c.args.join(" "),
                    path.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                ));
            }
        }
    }
    assert!(checked > 0, "the docs never tell users to run {name}");
    assert!(
        bad.is_empty(),
        "the docs tell users to run commands {name} does not have:\n{}",
        bad.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_in_spans_and_console_lines() {
        let text = "Run `kbz-health --inventory servers.tsv` or `sudo kbz-install rollback`;\n\
                    the crate `kbz-core`, the table `kbz-faults:*`, `pgrep -a kbz-backup`.\n\
                    ```console\n$ kbz-failover run SCENARIO --yes | jq .\n```\n";
        let c = commands_in("x.md", text, None);
        let shown: Vec<String> = c
            .iter()
            .map(|c| format!("{} {}", c.binary, c.args.join(" ")))
            .collect();
        assert_eq!(
            shown,
            [
                "kbz-health --inventory servers.tsv",
                "kbz-install rollback",
                "kbz-core ",
                "kbz-failover run SCENARIO --yes",
            ]
        );
        assert_eq!(c[3].subcommand_paths(), [vec!["run".to_string()]]);
        let timer = &commands_in("x", "`kbz-health timer install|remove --root D`", None)[0];
        assert_eq!(
            timer.subcommand_paths(),
            [vec!["timer", "install"], vec!["timer", "remove"]]
        );
        let explain = &commands_in("x", "`kbz-install explain E002`", None)[0];
        assert_eq!(explain.subcommand_paths(), [vec!["explain".to_string()]]);
    }

    #[test]
    fn the_catalogue_is_read_entry_by_entry_with_continuations_joined() {
        let cmds = documented_commands();
        assert!(cmds.iter().any(|c| c.code.as_deref()
            == Some(kbz_errors::Code::E066.to_string().as_str())
            && c.binary == "kbz-install"
            && c.args.first().map(String::as_str) == Some("rollback")));
        assert!(cmds.iter().all(|c| c.binary != "kbz-core"));
    }
}
