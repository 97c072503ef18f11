//! A real terminal for tests of interactive programs: a tmux server on a private socket
//! (`tmux -L`), killed on drop, running one program in a session of a given size; keys go
//! in with `send-keys`, the screen comes out with `capture-pane`. Used by kbz-install's
//! menu test (offline, bundled example) and by the lab e2e (the menu against real hosts).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of one test alone.
#[derive(Debug)]
pub struct Tmux {
    tmux: PathBuf,
    socket: String,
}

impl Tmux {
    /// Starts `argv` (with `NO_COLOR=1`) in a `cols`x`rows` session in `dir`; fails with the
    /// apt hint when tmux is missing.
    pub fn start(argv: &[&str], dir: &Path, cols: u16, rows: u16) -> Self {
        let tmux = crate::require_tool("tmux", "tmux");
        let socket = format!(
            "kbz-tmux-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let t = Tmux { tmux, socket };
        let command = argv
            .iter()
            .map(|a| kbz_core::shell::quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let o = t
            .cmd()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "menu"])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string(), "-c"])
            .arg(dir)
            .arg(format!("env NO_COLOR=1 TERM=xterm-256color {command}"))
            .output()
            .expect("run tmux");
        assert!(
            o.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.tmux);
        c.args(["-u", "-L", &self.socket])
            .env("LANG", "C.UTF-8")
            .env_remove("TMUX");
        c
    }

    /// Sends tmux key names (`Down`, `Escape`, `q`), one after the other.
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            let o = self
                .cmd()
                .args(["send-keys", "-t", "menu", k])
                .output()
                .expect("send-keys");
            assert!(o.status.success(), "send-keys {k}");
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    /// Types `s` literally.
    pub fn text(&self, s: &str) {
        let o = self
            .cmd()
            .args(["send-keys", "-t", "menu", "-l", s])
            .output()
            .expect("send-keys -l");
        assert!(o.status.success(), "send-keys -l {s}");
    }

    /// The screen now, trailing blanks trimmed.
    pub fn screen(&self) -> String {
        let o = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "menu"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim_end()
            .to_string()
    }

    /// The screen once it shows `want` and has stopped changing, or the last screen after
    /// `within`.
    pub fn try_wait_for(&self, want: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let s = self.screen();
            if s.contains(want) {
                std::thread::sleep(Duration::from_millis(250));
                let again = self.screen();
                if again == s {
                    return Ok(s);
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the screen never showed `{want}` within {} s; the screen:\n{s}",
                    within.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// [`Tmux::try_wait_for`] with 30 s, panicking with the screen.
    pub fn wait_for(&self, want: &str) -> String {
        self.try_wait_for(want, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Whether the program still runs.
    pub fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "menu"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}
