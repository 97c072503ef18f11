//! How a [`Cmd`] becomes one `sh -c` invocation, shared by the SSH and local executors.
//!
//! A script normally travels as the argument of `sh -c`. Linux limits one argument to 128 KiB
//! (`MAX_ARG_STRLEN`), so a longer script (a probe of many resources) is sent on standard
//! input in front of the command's own input and read back with `head -c`, which reads
//! exactly the script's bytes and leaves the rest of standard input to the script. The
//! script read back is checked (length and sha256) before it runs: a transfer cut midway
//! runs nothing and exits [`TRANSFER_INCOMPLETE_EXIT`], which [`finish`] turns into
//! `ExecError::Transfer`.

#[cfg(doc)]
use kbz_core::shell::TRANSFER_INCOMPLETE_EXIT;
use kbz_core::shell::{sha256_hex, transfer_error, verify_transfer_sh};
use kbz_core::{Cmd, ExecError, Output};

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
    let verify = verify_transfer_sh(
        "printf '%s' \"$kbz_s\"",
        full.len(),
        &sha256_hex(full.as_bytes()),
    );
    Invocation {
        // `echo .` keeps the script's trailing newlines from `$(...)`, which strips them.
        script: format!(
            "kbz_s=$(head -c {}; echo .); kbz_s=${{kbz_s%.}}; {verify}; eval \"$kbz_s\"",
            full.len()
        ),
        stdin: Some(stdin),
    }
}

/// A command's output as the caller sees it: a transfer the host found incomplete is
/// `ExecError::Transfer` (nothing was run or moved into place).
pub(crate) fn finish(host: &str, cmd: &Cmd, out: Output) -> Result<Output, ExecError> {
    match transfer_error(host, &describe(cmd), &out) {
        Some(e) => Err(e),
        None => Ok(out),
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
        assert!(
            inv.script
                .starts_with(&format!("kbz_s=$(head -c {}; echo .)", script.len())),
            "{}",
            inv.script
        );
        assert!(inv.script.len() < 1024, "the command line stays short");
        let mut expected = script.into_bytes();
        expected.extend_from_slice(b"input");
        assert_eq!(inv.stdin, Some(expected));
    }

    /// Runs an invocation on a real `sh`, its standard input cut after `keep` bytes (as a
    /// connection dropped midway leaves it).
    fn run_cut(inv: &Invocation, keep: usize) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&inv.script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let data = inv.stdin.clone().unwrap_or_default();
        let mut pipe = child.stdin.take().expect("stdin");
        let _ = pipe.write_all(&data[..keep.min(data.len())]);
        drop(pipe);
        child.wait_with_output().expect("wait")
    }

    #[test]
    fn a_long_script_cut_midway_runs_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let marker = dir.path().join("ran");
        // The first line would already act: a truncated script must not run even that.
        let script = format!(
            "touch {m}\n{}\nread line; printf '%s' \"$line\" > {m}\n",
            ": padding\n".repeat(INLINE_SCRIPT_MAX / 8),
            m = marker.display()
        );
        let cmd = Cmd::new(script.clone()).stdin("the input\n");
        let inv = invocation(&cmd);
        for keep in [0, 10, script.len() / 2, script.len() - 1] {
            let out = run_cut(&inv, keep);
            assert!(!marker.exists(), "cut at {keep}: the script ran");
            let o = Output {
                status: out.status.code().unwrap_or(-1),
                stdout: out.stdout,
                stderr: out.stderr,
            };
            let e = finish("h1", &cmd, o).expect_err("incomplete");
            assert_eq!(kbz_errors::HasCode::code(&e), kbz_errors::Code::E017);
            let text = e.to_string();
            assert!(
                text.contains(&format!("received {keep} of {} bytes", script.len())),
                "{text}"
            );
            assert!(text.starts_with("transfer to h1 was cut"), "{text}");
        }
        // Whole, it runs and still reads its own input after the script.
        let out = run_cut(&inv, usize::MAX);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&marker).expect("ran"), "the input");
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
