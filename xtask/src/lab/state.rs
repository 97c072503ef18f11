//! `target/lab/state.json`: exactly what the lab created, written before each thing is created
//! so that `lab down` can remove it even after a crash, and never anything else.

use super::procs::ProcId;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Bumped when the format changes incompatibly.
pub const STATE_VERSION: u32 = 1;

/// Everything the lab created on the controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// The bridge, once the lab decided to create it.
    pub bridge: Option<String>,
    /// Mount points in the controller's mount namespace the lab causes: each namespace's
    /// `/run/netns/NAME`, and `/run/netns` itself if it was not a mount point before. (The
    /// containers' overlay mounts live in their own mount namespaces and die with them.)
    pub mounts: Vec<PathBuf>,
    /// The apt-cacher-ng process, only if the lab started it.
    pub apt_cacher_ng: Option<ProcId>,
    /// Where its launcher writes apt-cacher-ng's pid (recorded before the launch).
    pub apt_cacher_ng_pidfile: Option<PathBuf>,
    /// Files the lab wrote that describe this lab (servers.tsv, kbz.toml, known_hosts).
    pub files: Vec<PathBuf>,
    /// The hosts.
    pub hosts: Vec<HostState>,
    /// Kernel-global sysctls (not per network namespace) as they were before the lab: hosts
    /// share the controller's kernel and module 1 sets them, so `down` writes these back.
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
}

/// Whether a host's container is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Power {
    /// Booted by `lab up` or `lab start`.
    On,
    /// Stopped by `lab kill` (a power cut).
    Off,
}

/// One host and what the lab created for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    /// Hostname and machine name, `kbzlab-hN`.
    pub name: String,
    /// 1-based index.
    pub index: u8,
    /// Address on the bridge.
    pub ip: Ipv4Addr,
    /// Inventory roles.
    pub roles: Vec<String>,
    /// The network namespace (`/run/netns/NAME` is its mount point).
    pub netns: Option<String>,
    /// The controller end of the veth pair, a bridge port.
    pub veth: Option<String>,
    /// The host's directory (holds the overlay upper dir and nspawn's overlay work dir).
    pub dir: Option<PathBuf>,
    /// The overlay upper dir.
    pub upper: PathBuf,
    /// Console log of systemd-nspawn.
    pub log: PathBuf,
    /// Where the launcher writes systemd-nspawn's pid (recorded before the launch).
    pub pidfile: PathBuf,
    /// The systemd-nspawn process.
    pub nspawn: Option<ProcId>,
    /// The container's init (pid 1 inside), the child of systemd-nspawn.
    pub leader: Option<ProcId>,
    /// Running or power-cut.
    pub power: Power,
    /// True while `lab partition` has its bridge port down.
    pub partitioned: bool,
}

impl State {
    /// An empty state.
    pub fn new() -> State {
        State {
            version: STATE_VERSION,
            bridge: None,
            mounts: Vec::new(),
            apt_cacher_ng: None,
            apt_cacher_ng_pidfile: None,
            files: Vec::new(),
            hosts: Vec::new(),
            sysctls: Vec::new(),
        }
    }

    /// Reads the state file; `None` if no lab is up.
    pub fn load(path: &Path) -> Result<Option<State>> {
        if !path.exists() {
            return Ok(None);
        }
        let text = fs_err::read_to_string(path)?;
        let state: State = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lab state file", path.display()))?;
        anyhow::ensure!(
            state.version == STATE_VERSION,
            "{} has format version {}, this xtask reads {STATE_VERSION}",
            path.display(),
            state.version
        );
        Ok(Some(state))
    }

    /// Writes the state file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        fs_err::write(&tmp, serde_json::to_string_pretty(self)? + "\n")?;
        fs_err::rename(&tmp, path)?;
        Ok(())
    }

    /// The host matching a name (`kbzlab-h2`), short name (`h2`), index (`2`) or address.
    pub fn host(&self, spec: &str) -> Result<&HostState> {
        let i = self.host_index(spec)?;
        Ok(&self.hosts[i])
    }

    /// Index into `hosts` of the host matching `spec` (see [`State::host`]).
    pub fn host_index(&self, spec: &str) -> Result<usize> {
        self.hosts
            .iter()
            .position(|h| {
                h.name == spec
                    || h.ip.to_string() == spec
                    || format!("h{}", h.index) == spec
                    || h.index.to_string() == spec
            })
            .with_context(|| {
                let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
                format!("no lab host {spec:?}; the hosts are {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hosts_by_any_spelling() {
        let mut state = State::new();
        for i in 1..=2u8 {
            state.hosts.push(HostState {
                name: format!("kbzlab-h{i}"),
                index: i,
                ip: Ipv4Addr::new(10, 77, 0, 10 + i),
                roles: vec![],
                netns: None,
                veth: None,
                dir: None,
                upper: PathBuf::new(),
                log: PathBuf::new(),
                pidfile: PathBuf::new(),
                nspawn: None,
                leader: None,
                power: Power::On,
                partitioned: false,
            });
        }
        for spec in ["kbzlab-h2", "h2", "2", "10.77.0.12"] {
            assert_eq!(state.host(spec).unwrap().index, 2);
        }
        let err = state.host("h9").unwrap_err().to_string();
        assert!(err.contains("kbzlab-h1, kbzlab-h2"), "{err}");
    }
}
