//! Processes the lab starts: identified by pid plus start time (so a recycled pid is never
//! signalled), started detached from the caller, signalled and awaited by that identity only.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// One process as the lab recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
}

/// The parts of `/proc/PID/stat` the lab needs.
#[derive(Debug)]
struct Stat {
    state: char,
    start_time: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/PID/stat`; the command name may hold spaces and parentheses, so the fields
/// are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name come field 3 (state) onwards; start time is field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

impl ProcId {
    /// The identity of a running process.
    pub fn of(pid: u32) -> Result<ProcId> {
        let st = stat(pid).with_context(|| format!("process {pid} is not running"))?;
        Ok(ProcId {
            pid,
            start_time: st.start_time,
        })
    }

    /// True while this very process exists and is not a zombie.
    pub fn alive(&self) -> bool {
        matches!(stat(self.pid), Some(st) if st.start_time == self.start_time && st.state != 'Z')
    }

    /// True while this process has a process table entry, even as a zombie.
    pub fn exists(&self) -> bool {
        matches!(stat(self.pid), Some(st) if st.start_time == self.start_time)
    }

    /// Sends a signal (`KILL`, `TERM`, ...) if the process is still this one.
    pub fn signal(&self, sig: &str) -> Result<()> {
        if !self.alive() {
            return Ok(());
        }
        let status = Command::new("kill")
            .args(["-s", sig, &self.pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .context("cannot run kill")?;
        if !status.success() && self.alive() {
            bail!("cannot send SIG{sig} to process {}", self.pid);
        }
        Ok(())
    }

    /// Waits until the process is gone; false on timeout.
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.alive() {
            if Instant::now() >= deadline {
                return false;
            }
            sleep(Duration::from_millis(50));
        }
        true
    }

    /// Signals, waits, and escalates to SIGKILL; errors only if the process survives SIGKILL.
    pub fn stop(&self, first: &str, grace: Duration) -> Result<()> {
        self.signal(first)?;
        if self.wait_gone(grace) {
            return Ok(());
        }
        self.signal("KILL")?;
        if self.wait_gone(Duration::from_secs(10)) {
            return Ok(());
        }
        bail!("process {} survived SIGKILL", self.pid)
    }

    /// The current children of this process (empty if it is gone).
    pub fn children(&self) -> Vec<ProcId> {
        if !self.alive() {
            return Vec::new();
        }
        let path = format!("/proc/{0}/task/{0}/children", self.pid);
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter_map(|pid| ProcId::of(pid).ok())
            .collect()
    }

    /// The short command name (`/proc/PID/comm`).
    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

/// Starts `argv` in its own session, detached from the caller (so the caller never has to reap
/// it and Ctrl-C in the caller's terminal does not reach it), with stdin from /dev/null and
/// stdout and stderr appended to `log`. The launching shell writes the pid to `pidfile` even if
/// the caller dies meanwhile, so a launch is never lost (see [`adopt`]). Returns the identity
/// once the process runs `argv[0]`.
pub fn spawn_detached(
    argv: &[OsString],
    env: &[(&str, &str)],
    log: &Path,
    pidfile: &Path,
) -> Result<ProcId> {
    let program = argv.first().context("empty command")?;
    if let Some(dir) = pidfile.parent() {
        fs_err::create_dir_all(dir)?;
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            r#"log="$1"; pidfile="$2"; shift 2
setsid "$@" >>"$log" 2>&1 </dev/null &
echo $! >"$pidfile.tmp" && mv "$pidfile.tmp" "$pidfile"
echo $!"#,
        )
        .arg("sh")
        .arg(log)
        .arg(pidfile)
        .args(argv)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run sh")?;
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
    let want: String = Path::new(program)
        .file_name()
        .unwrap_or(program)
        .to_string_lossy()
        .chars()
        .take(15)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let id = ProcId::of(pid).with_context(|| {
            format!(
                "{} exited at once; see {}",
                program.to_string_lossy(),
                log.display()
            )
        })?;
        if id.comm() == want {
            return Ok(id);
        }
        if Instant::now() >= deadline {
            let _ = id.signal("KILL");
            bail!("process {pid} did not become {want}");
        }
        sleep(Duration::from_millis(10));
    }
}

/// The process a pid file written by [`spawn_detached`] names, if it still runs and its
/// command line holds `expect` (consecutive arguments), which rules out a recycled pid.
pub fn adopt(pidfile: &Path, expect: &[&str]) -> Option<ProcId> {
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let id = ProcId::of(pid).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let matches = args
        .windows(expect.len())
        .any(|w| w.iter().zip(expect).all(|(a, e)| *a == e.as_bytes()));
    (id.alive() && matches).then_some(id)
}

/// Every process whose network namespace is the one mounted at `netns` (a `/run/netns/NAME`):
/// identified by the namespace's inode, not by any name.
pub fn in_netns(netns: &Path) -> Vec<ProcId> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(netns) else {
        return Vec::new();
    };
    let want = format!("net:[{}]", meta.ino());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|l| l.as_os_str() == want.as_str())
        })
        .filter_map(|pid| ProcId::of(pid).ok())
        .filter(ProcId::alive)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let text =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50";
        let st = parse_stat(text).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.start_time, 987654);
    }

    #[test]
    fn knows_itself_and_not_a_recycled_pid() {
        let me = ProcId::of(std::process::id()).unwrap();
        assert!(me.alive());
        let other = ProcId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.alive());
    }
}
