//! The exit-code table shared by every kbz binary: one list, printed under `EXIT CODES` in
//! each `--help` and mirrored in the README (a test keeps the two equal).

/// Success; kbz-health: every check is ok.
pub const OK: u8 = 0;
/// kbz-install: the run failed; every host was rolled back (or kept with --skip-cleanup);
/// kbz-backup: a backup, verification, restore, drill or prune failed.
pub const FAILED: u8 = 1;
/// kbz-health: degraded: redundancy is lost, every service still answers.
pub const DEGRADED: u8 = 1;
/// kbz-health: down: a service is unavailable (and nothing else: bad input is [`INPUT`]);
/// kbz-failover: the cluster is not healthy, nothing was injected.
pub const DOWN: u8 = 2;
/// Invalid input: inventory, config, secrets or command line, a usage error included (every
/// binary; sysexits' EX_USAGE, apart from every status code).
pub const INPUT: u8 = 64;
/// Hosts unreachable: nothing was changed (kbz-health: no host could be asked).
pub const UNREACHABLE: u8 = 3;
/// kbz-install: rollback incomplete; hosts need attention.
pub const ROLLBACK_INCOMPLETE: u8 = 4;

/// Every exit code with its meaning, in order; the source of `--help` and the README table.
pub const TABLE: &[(u8, &str)] = &[
    (OK, "success; kbz-health: healthy (every check ok)"),
    (
        FAILED,
        "kbz-install: the run failed, hosts were rolled back (or kept with --skip-cleanup), or the preflight found errors and nothing was changed; kbz-health: degraded (redundancy lost, every service up); kbz-failover: a run outside its budget (E071 lost writes, E072 write gap or VIP) or a failed run; kbz-backup: a backup, verification, restore (also one refused without --force), drill or prune failed (E041-E050)",
    ),
    (
        DOWN,
        "kbz-health: down, a service is unavailable (the JSON has `checks`); kbz-failover: the cluster is not healthy, nothing was injected",
    ),
    (UNREACHABLE, "hosts unreachable, nothing was changed; kbz-health: no host could be asked"),
    (ROLLBACK_INCOMPLETE, "kbz-install: rollback incomplete, some hosts need attention (see the listed steps)"),
    (
        INPUT,
        "invalid input: inventory, config, secrets or command line, a usage error included (the JSON has `errors`); nothing was changed",
    ),
];

/// The `EXIT CODES` section of a binary's `--help`, followed by `note` when it is not empty.
pub fn help(note: &str) -> String {
    let mut s = String::from("EXIT CODES (shared by every kbz binary):\n");
    for (code, meaning) in TABLE {
        s.push_str(&format!("  {code}  {meaning}\n"));
    }
    if !note.is_empty() {
        s.push('\n');
        s.push_str(note);
    }
    s
}

/// The table as README markdown rows (`| 0 | ... |`).
pub fn markdown() -> String {
    let mut s = String::from("| exit | meaning |\n|---|---|\n");
    for (code, meaning) in TABLE {
        s.push_str(&format!("| {code} | {meaning} |\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_shows_the_same_table() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .expect("README.md");
        assert!(
            readme.contains(&markdown()),
            "README.md must contain the exit-code table exactly as kbz_cli::exit::markdown() prints it:\n{}",
            markdown()
        );
    }

    #[test]
    fn codes_are_listed_in_order_once() {
        let codes: Vec<u8> = TABLE.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 64]);
        // Every code means one thing per binary: "down" and "bad input" never share one.
        assert_ne!(DOWN, INPUT);
        assert!(help("x").contains("  64  invalid input"));
        assert!(help("x").contains("  2  kbz-health: down"));
    }
}
