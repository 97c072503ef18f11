//! How a [`Cmd`] becomes one `sh -c` invocation, shared by the SSH and local executors.
//!
//! A script normally travels as the argument of `sh -c`. Linux limits one argument to 128 KiB
//! (`MAX_ARG_STRLEN`), so a longer script (a probe of many resources) is sent on standard
//! input in front of the command's own input and read back with `head -c`, which reads
//! exactly the script's bytes and leaves the rest of standard input to the script.

use kbz_core::Cmd;

/// Scripts up to this size go on the command line; longer ones go on standard input.
pub(crate) const INLINE_SCRIPT_MAX: usize = 64 * 1024;

/// What to hand to `sh -c` and what to write to its standard input.
#[derive(Debug)]
pub(crate) struct Invocation {
    /// The argument of `sh -c`.
    pub(crate) script: String,
    /// Bytes for standard input (`None`: nothing, standard input is closed at once).
    pub(crate) stdin: Option<Vec<u8>>,
}

/// Builds the invocation of a command: environment exported, long scripts moved to stdin.
pub(crate) fn invocation(cmd: &Cmd) -> Invocation {
    let full = cmd.full_script();
    if full.len() <= INLINE_SCRIPT_MAX {
        return Invocation {
            script: full,
            stdin: cmd.stdin.clone(),
        };
    }
    let mut stdin = full.clone().into_bytes();
    if let Some(input) = &cmd.stdin {
        stdin.extend_from_slice(input);
    }
    Invocation {
        script: format!("eval \"$(head -c {})\"", full.len()),
        stdin: Some(stdin),
    }
}

/// A short, secret-free description of a command for messages: the first line of its script
/// that does real work (environment values and standard input are never shown).
pub(crate) fn describe(cmd: &Cmd) -> String {
    let line = cmd
        .script
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("set ") && !l.starts_with('#'))
        .unwrap_or("");
    let mut s: String = line.chars().take(80).collect();
    if line.chars().count() > 80 {
        s.push_str("...");
    }
    if s.is_empty() {
        s.push_str("(empty script)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_scripts_stay_inline() {
        let inv = invocation(&Cmd::new("echo hi").env("A", "b").stdin("x"));
        assert_eq!(inv.script, "export A='b'\necho hi");
        assert_eq!(inv.stdin.as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn long_scripts_move_to_stdin() {
        let script = format!("{}\necho done", ":\n".repeat(INLINE_SCRIPT_MAX));
        let inv = invocation(&Cmd::new(script.clone()).stdin("input"));
        assert_eq!(inv.script, format!("eval \"$(head -c {})\"", script.len()));
        let mut expected = script.into_bytes();
        expected.extend_from_slice(b"input");
        assert_eq!(inv.stdin, Some(expected));
    }

    #[test]
    fn description_skips_boilerplate_and_never_shows_env() {
        let cmd = Cmd::new("set -e\n\n# note\napt-get install -y chrony").env("TOKEN", "s3cret");
        assert_eq!(describe(&cmd), "apt-get install -y chrony");
        assert!(!describe(&cmd).contains("s3cret"));
        assert_eq!(describe(&Cmd::new("")), "(empty script)");
        assert!(describe(&Cmd::new("x".repeat(200))).ends_with("..."));
    }
}
