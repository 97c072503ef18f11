//! A throwaway OpenSSH server on loopback, and the system users and sudoers rules tests log
//! in as; each is a drop guard, so what a test creates is removed however the test ends.
//!
//! [`Sshd::start`] generates host keys (ed25519 and ecdsa, as on a Debian server) and a user
//! key in a temporary directory, writes an `sshd_config` checked by `sshd -t`, and runs
//! `sshd -D` on `127.0.0.1:<free port>`; dropping it kills that sshd and every session process
//! it forked (by pid), and removes the directory. [`Sshd::freeze`] stops them (SIGSTOP) to
//! make a peer that is silent but not closed; the [`Frozen`] guard resumes them.
//!
//! Needs Debian's openssh-server (`apt-get install openssh-server`); the users and sudoers
//! rules need root. Missing either is a failure naming what to install, never a skip.

use crate::free_port;
use kbz_core::Host;
use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Debian's OpenSSH server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// Runs `script` with `sh -c`; its trimmed stdout. Panics when it fails.
pub fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    sh("id -u") == "0"
}

/// The user the tests run as.
pub fn current_user() -> String {
    sh("id -un")
}

/// `user:group` of the user the tests run as.
pub fn current_owner() -> String {
    format!("{}:{}", sh("id -un"), sh("id -gn"))
}

/// Generates an unencrypted ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) {
    keygen_type(path, "ed25519");
}

/// Generates an unencrypted key pair of `key_type` (`ed25519`, `ecdsa`, `rsa`) at `path`.
pub fn keygen_type(path: &Path, key_type: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", key_type, "-N", "", "-C", "kbz-test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen not found: apt-get install openssh-client");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ssh-ed25519 AAAA...` from the `.pub` file next to the private key `path` (comment dropped).
pub fn pub_key(path: &Path) -> String {
    let text = fs::read_to_string(path.with_extension("pub")).expect("read .pub");
    let f: Vec<&str> = text.split_whitespace().collect();
    format!("{} {}", f[0], f[1])
}

/// An sshd on 127.0.0.1:[`Sshd::port`], killed with its session processes when dropped.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    dir: TempDir,
    /// The private key whose public half is authorized for every user.
    pub user_key: PathBuf,
}

impl Sshd {
    /// An sshd with the default test configuration.
    pub fn start() -> Sshd {
        Self::start_with("")
    }

    /// An sshd whose config starts with `extra_config` (sshd takes the first value of an
    /// option, so these lines override the defaults).
    pub fn start_with(extra_config: &str) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} not found: these tests need a real OpenSSH server, install it with `apt-get install openssh-server`"
        );
        if !Path::new("/run/sshd").is_dir() {
            fs::create_dir_all("/run/sshd").unwrap_or_else(|e| {
                panic!("sshd needs its privilege-separation directory /run/sshd; create it as root (mkdir -p /run/sshd): {e}")
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("kbz-sshd-")
            .tempdir()
            .expect("tempdir");
        // Other users (the sudo test's) must be able to read authorized_keys.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let host_key = dir.path().join("host_key");
        let user_key = dir.path().join("user_key");
        keygen(&host_key);
        // A second host key, as on a real Debian server: the client must pick the known one.
        keygen_type(&dir.path().join("host_key_ecdsa"), "ecdsa");
        keygen(&user_key);
        let auth = dir.path().join("authorized_keys");
        fs::write(&auth, format!("{}\n", pub_key(&user_key))).expect("authorized_keys");
        fs::set_permissions(&auth, fs::Permissions::from_mode(0o644)).expect("chmod");
        let port = free_port();
        let d = dir.path().display();
        let config = dir.path().join("sshd_config");
        fs::write(
            &config,
            format!(
                "{extra_config}\nPort {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nHostKey {d}/host_key_ecdsa\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nLogLevel VERBOSE\nMaxStartups 50\n"
            ),
        )
        .expect("sshd_config");
        let check = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .output()
            .expect("sshd -t");
        assert!(
            check.status.success(),
            "sshd -t rejected the test config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = fs::File::create(dir.path().join("sshd.log")).expect("log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let mut sshd = Sshd {
            child,
            port,
            dir,
            user_key,
        };
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!("sshd exited with {status}: {}", sshd.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen on 127.0.0.1:{port}: {}",
                sshd.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sshd
    }

    /// A file in the server's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    /// Successful logins so far, from sshd's own log.
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey for").count()
    }

    /// The ed25519 host key, `ssh-ed25519 AAAA...`.
    pub fn host_key(&self) -> String {
        pub_key(&self.path("host_key"))
    }

    /// The ecdsa host key.
    pub fn host_key_ecdsa(&self) -> String {
        pub_key(&self.path("host_key_ecdsa"))
    }

    /// The known_hosts line of the ed25519 host key: `[127.0.0.1]:<port> ssh-ed25519 ...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key())
    }

    /// A known_hosts file `name` in the server's directory holding `lines`.
    pub fn known_hosts_with(&self, name: &str, lines: &[String]) -> PathBuf {
        let p = self.path(name);
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(&p, text).expect("known_hosts");
        p
    }

    /// The inventory host `loopback` at this server, logging in as `user`.
    pub fn host_as(&self, user: &str) -> Host {
        let mut h = Host::new("loopback", Ipv4Addr::LOCALHOST.into(), &[]);
        h.ssh_user = user.into();
        h.ssh_port = self.port;
        h
    }

    /// The inventory host `loopback` at this server, as the user the tests run as.
    pub fn host(&self) -> Host {
        self.host_as(&current_user())
    }

    /// The listening sshd and every process below it (the session processes it forked for
    /// each connection, and what they run), listening one first.
    pub fn processes(&self) -> Vec<u32> {
        let mut tree = vec![self.child.id()];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(children_of(parent));
            i += 1;
        }
        tree
    }

    /// Stops (SIGSTOP) this sshd and its session processes: the connections stay open and
    /// the kernel still acknowledges TCP, but nothing answers, as with a frozen host. The
    /// guard resumes them (SIGCONT) when dropped, however the test ends.
    pub fn freeze(&self) -> Frozen {
        let pids = self.processes();
        let guard = Frozen(pids.clone());
        signal("STOP", &pids);
        guard
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let pids = self.processes();
        // A stopped process acts on SIGKILL, but resume them anyway so none is left stopped.
        signal("CONT", &pids);
        signal("KILL", &pids[1..]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Processes stopped by [`Sshd::freeze`], resumed when dropped.
#[derive(Debug)]
pub struct Frozen(Vec<u32>);

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("CONT", &self.0);
    }
}

/// Sends SIGname to each pid (ignoring those gone already).
fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// The processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            // /proc/<pid>/stat: `pid (comm) state ppid ...`; comm may hold spaces and `)`.
            fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// A system user created for one test and removed when the test ends, even when it fails.
/// The name carries the process id, so parallel runs of the suite never share a user.
#[derive(Debug)]
pub struct TestUser(pub String);

impl TestUser {
    /// Creates `<prefix>-<pid>` with a home and `/bin/sh`, able to log in with a key.
    pub fn create(prefix: &str) -> TestUser {
        let name = format!("{prefix}-{}", std::process::id());
        let guard = TestUser(name.clone());
        let out = Command::new("useradd")
            .args(["--system", "--create-home", "--shell", "/bin/sh", &name])
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `*` instead of the locked `!`: sshd without PAM refuses locked accounts even for keys.
        sh(&format!("usermod -p '*' {name}"));
        guard
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // sshd's session process for the user may outlive the client by a moment, and
        // userdel refuses a user with running processes: retry for a few seconds.
        for _ in 0..50 {
            let _ = Command::new("userdel").args(["--remove", &self.0]).output();
            let exists = Command::new("id")
                .arg(&self.0)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !exists {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("warning: test user {} could not be removed", self.0);
    }
}

/// A sudoers drop-in removed when the test ends, even when it fails.
#[derive(Debug)]
pub struct SudoersRule(PathBuf);

impl SudoersRule {
    /// `/etc/sudoers.d/kbz-test-<user>`: `user` runs anything as root without a password.
    pub fn nopasswd(user: &str) -> SudoersRule {
        // sudo skips drop-ins whose name contains a dot, so the pid goes after a dash.
        let path = Self::path_for(user);
        let rule = SudoersRule(path.clone());
        fs::write(&path, format!("{user} ALL=(ALL) NOPASSWD:ALL\n")).expect("sudoers");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).expect("chmod");
        rule
    }

    /// Where the rule of `user` is written.
    pub fn path_for(user: &str) -> PathBuf {
        PathBuf::from(format!("/etc/sudoers.d/kbz-test-{user}"))
    }
}

impl Drop for SudoersRule {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_users_and_sudoers_rules_are_removed_even_when_the_test_fails() {
        assert!(
            is_root(),
            "creates a user, so it needs root (CI runs as root)"
        );
        let name = std::panic::catch_unwind(|| {
            let user = TestUser::create("kbz-guard");
            let _rule = SudoersRule::nopasswd(&user.0);
            assert!(SudoersRule::path_for(&user.0).exists());
            panic!("{}", user.0);
        })
        .expect_err("the closure panics")
        .downcast::<String>()
        .expect("message");
        let id = Command::new("id").arg(name.as_str()).output().expect("id");
        assert!(!id.status.success(), "user {name} left behind");
        assert!(!SudoersRule::path_for(&name).exists());
    }

    /// `State:` of /proc/<pid>/status (`T (stopped)`, `S (sleeping)`, ...), or `None` once the
    /// process is gone (or a zombie).
    fn state(pid: u32) -> Option<String> {
        let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let st = s.lines().find_map(|l| l.strip_prefix("State:"))?.trim();
        (!st.starts_with('Z')).then(|| st.to_string())
    }

    /// Whether `pid` is (`stopped`) or is not stopped within 5 s.
    fn settles(pid: u32, stopped: bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let st = state(pid).expect("running");
            if st.starts_with('T') == stopped {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_frozen_sshd_resumes_when_the_guard_drops_and_is_gone_after_the_test_even_on_failure() {
        let pid = std::panic::catch_unwind(|| {
            let sshd = Sshd::start();
            let pid = sshd.processes()[0];
            let frozen = sshd.freeze();
            // SIGSTOP and SIGCONT are delivered asynchronously: the state follows within a
            // moment (a loaded CI machine once read it before it changed).
            assert!(settles(pid, true), "not stopped: {:?}", state(pid));
            drop(frozen);
            assert!(settles(pid, false), "still stopped: {:?}", state(pid));
            // Frozen again, then the test fails: the sshd must not outlive it.
            let _frozen = sshd.freeze();
            panic!("{pid}");
        })
        .expect_err("the closure panics")
        .downcast::<String>()
        .expect("message")
        .parse::<u32>()
        .expect("pid");
        assert_eq!(state(pid), None, "sshd {pid} left behind");
    }
}
