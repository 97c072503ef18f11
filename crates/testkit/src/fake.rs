//! `FakeHost`: an in-memory host for fast engine tests. It keeps files, directories,
//! packages, services, sysctls, modules and swap as plain data, answers `probe` and `apply`
//! from that state, counts round trips, and fails on demand. It does not run shell: scripts
//! sent to `run` get scripted answers, and a script nobody scripted is an error naming it
//! (so a wrong guard cannot pass by getting a silent exit 0). Real behaviour is proven on
//! the lab, not here.

use async_trait::async_trait;
use kbz_core::executor::{Connector, ExecError, Executor, Output};
use kbz_core::inventory::Host;
use kbz_core::resource::{Observed, Op, Resource};
use kbz_core::Cmd;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A file on the fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFile {
    /// Bytes.
    pub content: Vec<u8>,
    /// Mode bits.
    pub mode: u32,
    /// `user:group`.
    pub owner: String,
}

/// A systemd unit on the fake host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FakeService {
    /// Enabled at boot.
    pub enabled: bool,
    /// Active.
    pub active: bool,
}

/// Everything that makes up the host's state; compared byte for byte in rollback tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FakeState {
    /// Files by path.
    pub files: BTreeMap<String, FakeFile>,
    /// Directories by path with mode and owner.
    pub dirs: BTreeMap<String, (u32, String)>,
    /// Installed packages.
    pub packages: BTreeSet<String>,
    /// Units by name (without `.service`).
    pub services: BTreeMap<String, FakeService>,
    /// Kernel parameters.
    pub sysctl: BTreeMap<String, String>,
    /// Loaded modules.
    pub modules: BTreeSet<String>,
    /// Swap active.
    pub swap_active: bool,
    /// Ids of guarded commands that have run (until their undo runs). The fake host cannot
    /// evaluate `unless` scripts, so a command counts as done once it ran.
    pub done_commands: BTreeSet<String>,
}

/// When to fail.
#[derive(Debug, Clone)]
enum FailRule {
    /// The n-th mutating operation (1-based) from now.
    Nth(u64),
    /// Any operation whose description contains the text.
    Matching(String),
}

#[derive(Debug, Default)]
struct Inner {
    state: FakeState,
    package_units: BTreeMap<String, Vec<String>>,
    scripted: Vec<(String, Output)>,
    ran: Vec<String>,
    applied: Vec<Op>,
    restarts: BTreeMap<String, u64>,
    fail: Option<FailRule>,
    mutations: u64,
}

/// An in-memory host. Cheap to clone-share through `Arc`.
#[derive(Debug)]
pub struct FakeHost {
    name: String,
    inner: Mutex<Inner>,
    round_trips: AtomicU64,
}

impl FakeHost {
    /// A fresh Debian-like host: `/etc/hosts`, `/etc/hostname`, `/etc/fstab` with a swap line,
    /// swap active, `ssh` running, common sysctls at kernel defaults.
    pub fn debian(name: &str) -> Self {
        let h = FakeHost::empty(name);
        {
            let mut i = h.lock();
            let s = &mut i.state;
            let f = |c: &str| FakeFile {
                content: c.as_bytes().to_vec(),
                mode: 0o644,
                owner: "root:root".into(),
            };
            s.files
                .insert("/etc/hosts".into(), f("127.0.0.1\tlocalhost\n"));
            s.files.insert("/etc/hostname".into(), f("debian\n"));
            s.files.insert(
                "/etc/fstab".into(),
                f("UUID=aaaa / ext4 errors=remount-ro 0 1\nUUID=bbbb none swap sw 0 0\n"),
            );
            s.swap_active = true;
            s.packages.insert("openssh-server".into());
            s.services.insert(
                "ssh".into(),
                FakeService {
                    enabled: true,
                    active: true,
                },
            );
            for (k, v) in [
                ("net.ipv4.ip_forward", "0"),
                ("net.bridge.bridge-nf-call-iptables", "0"),
                ("net.bridge.bridge-nf-call-ip6tables", "0"),
                ("vm.swappiness", "60"),
                ("fs.inotify.max_user_instances", "128"),
                ("fs.inotify.max_user_watches", "8192"),
                ("net.core.somaxconn", "4096"),
                ("vm.max_map_count", "65530"),
                ("net.ipv4.ip_nonlocal_bind", "0"),
            ] {
                s.sysctl.insert(k.into(), v.into());
            }
            i.package_units
                .insert("chrony".into(), vec!["chrony".into()]);
            i.package_units
                .insert("systemd-timesyncd".into(), vec!["systemd-timesyncd".into()]);
        }
        h
    }

    /// A host with nothing on it.
    pub fn empty(name: &str) -> Self {
        FakeHost {
            name: name.into(),
            inner: Mutex::new(Inner::default()),
            round_trips: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installing `package` creates these units, enabled and active (as Debian does).
    pub fn package_units(&self, package: &str, units: &[&str]) {
        self.lock().package_units.insert(
            package.into(),
            units.iter().map(|u| u.to_string()).collect(),
        );
    }

    /// Scripts whose text contains `pattern` answer `output`. The pattern scripted last wins,
    /// so a test overrides a fixture's default by scripting after it. A script that matches
    /// no pattern is an error naming the script.
    pub fn script(&self, pattern: &str, output: Output) {
        self.lock().scripted.push((pattern.into(), output));
    }

    /// The n-th mutating operation from now (1-based) fails.
    pub fn fail_nth_operation(&self, n: u64) {
        let mut i = self.lock();
        i.mutations = 0;
        i.fail = Some(FailRule::Nth(n));
    }

    /// Any operation whose description contains `text` fails.
    pub fn fail_matching(&self, text: &str) {
        self.lock().fail = Some(FailRule::Matching(text.into()));
    }

    /// Stops injecting failures.
    pub fn clear_failure(&self) {
        self.lock().fail = None;
    }

    /// A copy of the state.
    pub fn state(&self) -> FakeState {
        self.lock().state.clone()
    }

    /// Mutable access to the state, for arranging a test.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.lock().state)
    }

    /// Operations applied so far, in order.
    pub fn applied(&self) -> Vec<Op> {
        self.lock().applied.clone()
    }

    /// Scripts run so far.
    pub fn ran(&self) -> Vec<String> {
        self.lock().ran.clone()
    }

    /// How often a service was restarted.
    pub fn restarts(&self, service: &str) -> u64 {
        self.lock().restarts.get(service).copied().unwrap_or(0)
    }

    /// Resets the round-trip counter.
    pub fn reset_round_trips(&self) {
        self.round_trips.store(0, Ordering::SeqCst);
    }

    fn trip(&self) {
        self.round_trips.fetch_add(1, Ordering::SeqCst);
    }

    fn observe(s: &FakeState, r: &Resource) -> Observed {
        match r {
            Resource::File { path, .. } => match s.files.get(path) {
                Some(f) => Observed::File {
                    content: Some(f.content.clone()),
                    mode: Some(f.mode),
                    owner: Some(f.owner.clone()),
                },
                None => Observed::File {
                    content: None,
                    mode: None,
                    owner: None,
                },
            },
            Resource::Directory { path, .. } => match s.dirs.get(path) {
                Some((m, o)) => Observed::Directory {
                    exists: true,
                    mode: Some(*m),
                    owner: Some(o.clone()),
                },
                None => Observed::Directory {
                    exists: false,
                    mode: None,
                    owner: None,
                },
            },
            Resource::Package { name, .. } => Observed::Package {
                installed: s.packages.contains(name),
            },
            Resource::Service { name, .. } => match s.services.get(name) {
                Some(u) => Observed::Service {
                    exists: true,
                    enabled: u.enabled,
                    active: u.active,
                },
                None => Observed::Service {
                    exists: false,
                    enabled: false,
                    active: false,
                },
            },
            Resource::Sysctl { key, .. } => Observed::Sysctl {
                value: s.sysctl.get(key).cloned(),
            },
            Resource::KernelModule { name } => Observed::KernelModule {
                loaded: s.modules.contains(name),
            },
            Resource::SwapOff => Observed::Swap {
                active: s.swap_active,
                fstab: s
                    .files
                    .get("/etc/fstab")
                    .map(|f| f.content.clone())
                    .unwrap_or_default(),
            },
            Resource::Artifact { path, .. } => match s.files.get(path) {
                Some(f) => Observed::Artifact {
                    sha256: Some(kbz_core::shell::sha256_hex(&f.content)),
                    mode: Some(f.mode),
                    owner: Some(f.owner.clone()),
                },
                None => Observed::Artifact {
                    sha256: None,
                    mode: None,
                    owner: None,
                },
            },
            Resource::Command { id, creates, .. } => Observed::Command {
                satisfied: creates.as_ref().is_some_and(|c| s.files.contains_key(c))
                    || s.done_commands.contains(id),
            },
        }
    }

    fn mutate(&self, i: &mut Inner, op: &Op) -> Result<(), ExecError> {
        i.mutations += 1;
        let fail = match &i.fail {
            Some(FailRule::Nth(n)) => i.mutations == *n,
            Some(FailRule::Matching(t)) => op.describe().contains(t.as_str()),
            None => false,
        };
        if fail {
            return Err(ExecError::CommandFailed {
                host: self.name.clone(),
                status: 100,
                what: op.describe(),
                stderr: "injected failure".into(),
            });
        }
        i.applied.push(op.clone());
        let s = &mut i.state;
        match op {
            Op::WriteFile {
                path,
                content,
                mode,
                owner,
            } => {
                s.files.insert(
                    path.clone(),
                    FakeFile {
                        content: content.clone(),
                        mode: *mode,
                        owner: owner.clone(),
                    },
                );
            }
            Op::RemoveFile { path } => {
                s.files.remove(path);
            }
            Op::EnsureDir { path, mode, owner } => {
                s.dirs.insert(path.clone(), (*mode, owner.clone()));
            }
            Op::RemoveDir { path } => {
                s.dirs.remove(path);
            }
            Op::InstallPackages { names } => {
                for n in names {
                    if s.packages.insert(n.clone()) {
                        for u in i.package_units.get(n).cloned().unwrap_or_default() {
                            s.services.insert(
                                u,
                                FakeService {
                                    enabled: true,
                                    active: true,
                                },
                            );
                        }
                    }
                }
            }
            Op::RemovePackages { names } => {
                for n in names {
                    if s.packages.remove(n) {
                        for u in i.package_units.get(n).cloned().unwrap_or_default() {
                            s.services.remove(&u);
                        }
                    }
                }
            }
            Op::EnableService { name } => {
                s.services.entry(name.clone()).or_default().enabled = true
            }
            Op::DisableService { name } => {
                s.services.entry(name.clone()).or_default().enabled = false
            }
            Op::StartService { name } => s.services.entry(name.clone()).or_default().active = true,
            Op::StopService { name } => s.services.entry(name.clone()).or_default().active = false,
            Op::RestartService { name } => {
                s.services.entry(name.clone()).or_default().active = true;
                *i.restarts.entry(name.clone()).or_default() += 1;
            }
            Op::SetSysctl { key, value } => {
                s.sysctl
                    .insert(key.clone(), kbz_core::shell::normalize_ws(value));
            }
            Op::LoadModule { name } => {
                s.modules.insert(name.clone());
            }
            Op::UnloadModule { name } => {
                s.modules.remove(name);
            }
            Op::SwapOff => s.swap_active = false,
            Op::SwapOn => s.swap_active = true,
            Op::PutArtifact { path, .. } => {
                return Err(ExecError::File {
                    host: self.name.clone(),
                    path: path.clone(),
                    reason: "artifacts are pushed by the engine (put_local_file)".into(),
                })
            }
            Op::SaveArtifact { path } => {
                if let Some(f) = s.files.get(path).cloned() {
                    s.files.insert(format!("{path}.kbz-prev"), f);
                }
            }
            Op::RestoreArtifact { path } => {
                if let Some(f) = s.files.remove(&format!("{path}.kbz-prev")) {
                    s.files.insert(path.clone(), f);
                }
            }
            Op::Run { id, script } => {
                i.ran.push(script.clone());
                match id.strip_prefix("undo ") {
                    Some(target) => {
                        s.done_commands.remove(target);
                    }
                    None => {
                        s.done_commands.insert(id.clone());
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Executor for FakeHost {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.trip();
        let mut i = self.lock();
        i.ran.push(cmd.script.clone());
        i.scripted
            .iter()
            .rev()
            .find(|(p, _)| cmd.script.contains(p.as_str()))
            .map(|(_, o)| o.clone())
            .ok_or_else(|| unscripted(&self.name, &cmd.script))
    }

    async fn put_file(
        &self,
        path: &str,
        content: &[u8],
        mode: u32,
        owner: &str,
    ) -> Result<(), ExecError> {
        self.trip();
        let mut i = self.lock();
        let op = Op::WriteFile {
            path: path.into(),
            content: content.to_vec(),
            mode,
            owner: owner.into(),
        };
        self.mutate(&mut i, &op)
    }

    async fn put_local_file(
        &self,
        path: &str,
        local: &std::path::Path,
        sha256: &str,
        mode: u32,
        owner: &str,
    ) -> Result<(), ExecError> {
        let content = std::fs::read(local).map_err(|e| ExecError::File {
            host: "controller".into(),
            path: local.display().to_string(),
            reason: e.to_string(),
        })?;
        if kbz_core::shell::sha256_hex(&content) != sha256 {
            return Err(ExecError::File {
                host: self.name.clone(),
                path: path.into(),
                reason: "the local copy does not match its pin".into(),
            });
        }
        self.put_file(path, &content, mode, owner).await
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, ExecError> {
        self.trip();
        Ok(self.lock().state.files.get(path).map(|f| f.content.clone()))
    }

    async fn facts(&self) -> Result<kbz_core::executor::Facts, ExecError> {
        self.trip();
        Ok(kbz_core::executor::Facts {
            os_id: "debian".into(),
            os_version: "12".into(),
            arch: "x86_64".into(),
            hostname: self.name.clone(),
            addresses: Vec::new(),
        })
    }

    async fn probe(&self, resources: &[Resource]) -> Result<Vec<Observed>, ExecError> {
        self.trip();
        let i = self.lock();
        Ok(resources
            .iter()
            .map(|r| FakeHost::observe(&i.state, r))
            .collect())
    }

    async fn apply(&self, op: &Op) -> Result<(), ExecError> {
        self.trip();
        let mut i = self.lock();
        self.mutate(&mut i, op)
    }

    /// The host lock is a file of the fake state, taken and released atomically (so two
    /// runs on one fake fleet collide as on real hosts, and a test can plant a lock).
    async fn lock_host(&self, path: &str, owner: &str) -> Result<Option<String>, ExecError> {
        self.trip();
        let mut i = self.lock();
        if let Some(f) = i.state.files.get(path) {
            return Ok(Some(String::from_utf8_lossy(&f.content).trim().to_string()));
        }
        i.state.files.insert(
            path.into(),
            FakeFile {
                content: format!("{owner}\n").into_bytes(),
                mode: 0o644,
                owner: "root:root".into(),
            },
        );
        Ok(None)
    }

    async fn unlock_host(&self, path: &str, owner: &str) -> Result<(), ExecError> {
        self.trip();
        let mut i = self.lock();
        if i.state
            .files
            .get(path)
            .is_some_and(|f| String::from_utf8_lossy(&f.content).trim() == owner)
        {
            i.state.files.remove(path);
        }
        Ok(())
    }

    fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

/// The error for a command no test scripted: names the host and the command, so the test
/// that needs it says what to script.
fn unscripted(host: &str, script: &str) -> ExecError {
    ExecError::Protocol {
        host: host.into(),
        reason: format!(
            "FakeHost: no answer scripted for this command (script it with \
             FakeHost::script): {script}"
        ),
    }
}

/// Hands out fake hosts by inventory hostname; unknown or marked hosts are unreachable.
#[derive(Debug, Default)]
pub struct FakeConnector {
    hosts: BTreeMap<String, Arc<FakeHost>>,
    unreachable: Mutex<BTreeSet<String>>,
}

impl FakeConnector {
    /// A fresh Debian fake host for every inventory host.
    pub fn debian_fleet(hosts: &[Host]) -> Self {
        let mut c = FakeConnector::default();
        for h in hosts {
            c.hosts
                .insert(h.hostname.clone(), Arc::new(FakeHost::debian(&h.hostname)));
        }
        c
    }

    /// The fake host behind a name.
    pub fn host(&self, name: &str) -> Option<Arc<FakeHost>> {
        self.hosts.get(name).cloned()
    }

    /// Every fake host.
    pub fn hosts(&self) -> impl Iterator<Item = (&String, &Arc<FakeHost>)> {
        self.hosts.iter()
    }

    /// The state of every fake host, in name order (compare before and after a run).
    pub fn states(&self) -> Vec<FakeState> {
        self.hosts.values().map(|h| h.state()).collect()
    }

    /// Makes a host unreachable.
    pub fn set_unreachable(&mut self, name: &str) {
        self.set_reachable(name, false);
    }

    /// Makes a host unreachable (`false`) or reachable again, on a shared fleet.
    pub fn set_reachable(&self, name: &str, reachable: bool) {
        let mut u = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
        if reachable {
            u.remove(name);
        } else {
            u.insert(name.into());
        }
    }
}

#[async_trait]
impl Connector for FakeConnector {
    async fn connect(&self, host: &Host) -> Result<Arc<dyn Executor>, ExecError> {
        match self.hosts.get(&host.hostname) {
            Some(h)
                if !self
                    .unreachable
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&host.hostname) =>
            {
                Ok(h.clone() as Arc<dyn Executor>)
            }
            _ => Err(ExecError::Unreachable {
                host: host.ip.to_string(),
                port: host.ssh_port,
                reason: "connection refused (fake)".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(stdout: &str) -> Output {
        Output {
            status: 0,
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        }
    }

    #[tokio::test]
    async fn an_unscripted_command_is_an_error_naming_it() {
        let h = FakeHost::debian("h1");
        h.script("systemctl is-active", out("active\n"));
        let e = h
            .run(&Cmd::new("etcdctl member list"))
            .await
            .expect_err("unscripted");
        let text = e.to_string();
        assert!(text.contains("etcdctl member list"), "{text}");
        assert!(text.contains("h1"), "{text}");
        assert_eq!(kbz_errors::HasCode::code(&e), kbz_errors::Code::E017);
        // It is recorded as run, so a test can still see what was attempted.
        assert_eq!(h.ran(), ["etcdctl member list"]);
        let ok = h
            .run(&Cmd::new("systemctl is-active etcd"))
            .await
            .expect("scripted");
        assert_eq!(ok.stdout_str(), "active\n");
    }

    #[tokio::test]
    async fn the_pattern_scripted_last_wins() {
        let h = FakeHost::debian("h1");
        h.script("ping", out("default"));
        h.script("ping", out("override"));
        let o = h.run(&Cmd::new("redis-cli ping")).await.expect("scripted");
        assert_eq!(o.stdout_str(), "override");
    }
}
