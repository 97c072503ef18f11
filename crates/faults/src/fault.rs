//! The faults: a partition of one host from its peers by nftables rules on that host (the
//! controller and clients stay connected; a systemd timer removes the rules by itself, so a
//! controller that dies mid-run never leaves a host cut off), a SIGKILL of a unit, and a
//! power cut through operator-given commands.

use crate::FaultError;
use kbz_core::shell::quote;
use kbz_core::{Cmd, Executor};
use std::net::IpAddr;
use std::time::Duration;

/// The nftables table kbz's partition lives in (and nothing else).
pub const TABLE: &str = "kbz_fault";
/// The transient systemd unit that deletes [`TABLE`] when the failsafe expires.
pub const FAILSAFE_UNIT: &str = "kbz-fault-heal";

/// One fault, as a scenario applies it to its victim.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fault {
    /// nftables rules on the victim drop every packet to and from its peers (the other
    /// inventory hosts); the controller and clients keep reaching it.
    PeerPartition,
    /// `systemctl kill -s KILL` of a unit (every process of it at once).
    KillUnit {
        /// The unit, e.g. `patroni`.
        unit: String,
    },
    /// `systemctl kill -s KILL` of a unit held down until the heal (masked in /run so
    /// systemd cannot restart it; a timer unmasks and starts it by itself).
    HoldDown {
        /// The unit, e.g. `haproxy`.
        unit: String,
    },
    /// A power cut and power-on by the operator's commands (see [`HostCommands`]).
    PowerCut,
    /// A whole-host isolation by the operator's commands (the lab takes the host's bridge
    /// port down: clients and the controller are cut off too), undone by the second one.
    Isolate,
    /// The daemon's own graceful switchover (Patroni: `patronictl switchover` to the
    /// synchronous standby).
    Switchover,
}

impl Fault {
    /// One line for `kbz-failover list`.
    pub fn describe(&self) -> String {
        match self {
            Fault::PeerPartition => "nftables partition from its peers (self-removing)".into(),
            Fault::KillUnit { unit } => format!("SIGKILL of every process of {unit}"),
            Fault::HoldDown { unit } => {
                format!("SIGKILL of {unit}, held down until healed (self-restoring)")
            }
            Fault::PowerCut => "power cut by [failover] power_off / power_on".into(),
            Fault::Isolate => "whole-host isolation by the isolate commands".into(),
            Fault::Switchover => "graceful switchover by the daemon itself".into(),
        }
    }
}

/// A fault and its undo as commands run on the controller (power off / on, isolate /
/// rejoin), with `{host}` and `{ip}` replaced by the victim's inventory name and address
/// (shell-quoted). Examples: the lab's `cargo xtask lab kill {host}` / `lab start {host}`, an
/// IPMI or hypervisor CLI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostCommands {
    /// Applies the fault (cuts the power); returns once it holds.
    pub off: String,
    /// Undoes it (powers the host on again, same disk).
    pub on: String,
}

impl HostCommands {
    /// The command for `host` at `ip`, placeholders replaced.
    pub fn render(template: &str, host: &str, ip: IpAddr) -> String {
        template
            .replace("{host}", &quote(host))
            .replace("{ip}", &quote(&ip.to_string()))
    }
}

/// The script that installs the partition: nftables (installed from the host's package
/// source if missing), one table with input and output chains dropping the peers' addresses,
/// and a transient timer that deletes the table after `failsafe`.
pub fn partition_script(peers: &[IpAddr], failsafe: Duration) -> String {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = peers.iter().partition(|p| p.is_ipv4());
    let set = |v: &[IpAddr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rules = String::new();
    if !v4.is_empty() {
        rules.push_str(&format!(
            "  chain input {{ type filter hook input priority -10; policy accept; ip saddr {{ {s} }} drop; }}\n\
             \x20 chain output {{ type filter hook output priority -10; policy accept; ip daddr {{ {s} }} drop; }}\n",
            s = set(&v4)
        ));
    }
    if !v6.is_empty() {
        rules.push_str(&format!(
            "  chain input6 {{ type filter hook input priority -10; policy accept; ip6 saddr {{ {s} }} drop; }}\n\
             \x20 chain output6 {{ type filter hook output priority -10; policy accept; ip6 daddr {{ {s} }} drop; }}\n",
            s = set(&v6)
        ));
    }
    format!(
        "set -e\n\
         if ! command -v nft >/dev/null 2>&1; then\n\
         \x20 DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >/dev/null\n\
         fi\n\
         systemctl stop {unit}.timer {unit}.service >/dev/null 2>&1 || true\n\
         systemctl reset-failed {unit}.timer {unit}.service >/dev/null 2>&1 || true\n\
         nft delete table inet {TABLE} >/dev/null 2>&1 || true\n\
         # The failsafe first: if anything below fails or the controller disappears, the rules\n\
         # still go away on their own.\n\
         systemd-run --quiet --unit={unit} --on-active={secs}s /usr/sbin/nft delete table inet {TABLE}\n\
         nft -f - <<'KBZ_NFT'\n\
         table inet {TABLE} {{\n\
         {rules}}}\n\
         KBZ_NFT\n",
        unit = FAILSAFE_UNIT,
        secs = failsafe.as_secs().max(1),
    )
}

/// The script that removes the partition and its failsafe timer (a no-op when absent).
pub fn heal_script() -> String {
    format!(
        "nft delete table inet {TABLE} >/dev/null 2>&1 || true\n\
         systemctl stop {FAILSAFE_UNIT}.timer >/dev/null 2>&1 || true\n\
         systemctl reset-failed {FAILSAFE_UNIT}.timer {FAILSAFE_UNIT}.service >/dev/null 2>&1 || true\n\
         ! nft list table inet {TABLE} >/dev/null 2>&1\n"
    )
}

/// `systemctl kill -s KILL` of every process of `unit`.
pub fn kill_unit_script(unit: &str) -> String {
    // The default kill target is every process of the unit (PostgreSQL's too for Patroni).
    // systemd may fail on the unit's cgroup after its processes got the signal (EIO in
    // containers): what counts is that the main process died, within 5 s (systemd then
    // restarts the unit under a new one).
    let u = quote(unit);
    format!(
        "pid=$(systemctl show -p MainPID --value {u})\n\
         if [ -z \"$pid\" ] || [ \"$pid\" = 0 ]; then echo {u} is not running >&2; exit 1; fi\n\
         systemctl kill -s KILL {u} 2>/dev/null || true\n\
         i=0\n\
         while kill -0 \"$pid\" 2>/dev/null; do\n\
         \x20 i=$((i + 1))\n\
         \x20 if [ \"$i\" -ge 50 ]; then echo \"{u} (pid $pid) still alive 5 s after SIGKILL\" >&2; exit 1; fi\n\
         \x20 sleep 0.1\n\
         done\n"
    )
}

/// The transient unit that brings a held-down unit back when the failsafe expires.
pub const HOLD_FAILSAFE_UNIT: &str = "kbz-fault-release";

/// Masks `unit` for this boot (so systemd does not restart it), arms a timer that unmasks and
/// starts it after `failsafe`, then SIGKILLs every process of it.
pub fn hold_down_script(unit: &str, failsafe: Duration) -> String {
    let u = quote(unit);
    format!(
        "set -e\n\
         systemctl stop {f}.timer {f}.service >/dev/null 2>&1 || true\n\
         systemctl reset-failed {f}.timer {f}.service >/dev/null 2>&1 || true\n\
         systemd-run --quiet --unit={f} --on-active={secs}s /bin/sh -c {inner}\n\
         systemctl mask --runtime {u} >/dev/null\n\
         # systemd may fail on the unit's cgroup after its processes got the signal (EIO in\n\
         # containers): what counts is that the unit stopped, within 5 s.\n\
         systemctl kill -s KILL {u} 2>/dev/null || true\n\
         i=0\n\
         while systemctl is-active --quiet {u}; do\n\
         \x20 i=$((i + 1))\n\
         \x20 if [ \"$i\" -ge 50 ]; then echo {u} still active 5 s after SIGKILL >&2; exit 1; fi\n\
         \x20 sleep 0.1\n\
         done\n",
        f = HOLD_FAILSAFE_UNIT,
        secs = failsafe.as_secs().max(1),
        inner = quote(&format!(
            "systemctl unmask --runtime {u} && systemctl start {u}"
        )),
    )
}

/// Undoes [`hold_down_script`]: unmasks and starts `unit`, removes the failsafe (a no-op
/// when nothing is held down).
pub fn release_script(unit: &str) -> String {
    let u = quote(unit);
    format!(
        "systemctl unmask --runtime {u} >/dev/null 2>&1 || true\n\
         systemctl stop {f}.timer >/dev/null 2>&1 || true\n\
         systemctl reset-failed {f}.timer {f}.service {u} >/dev/null 2>&1 || true\n\
         systemctl start {u}\n",
        f = HOLD_FAILSAFE_UNIT,
    )
}

async fn run_checked(exec: &dyn Executor, script: String, what: &str) -> Result<(), FaultError> {
    let out = exec
        .run(&Cmd::new(script).timeout(Duration::from_secs(120)))
        .await?;
    if out.success() {
        Ok(())
    } else {
        Err(FaultError::Command {
            host: exec.name().to_string(),
            what: what.to_string(),
            reason: format!("{}{}", out.stdout_str(), out.stderr_str())
                .trim()
                .to_string(),
        })
    }
}

/// Cuts `exec`'s host off from `peers` until [`heal`] (or `failsafe` elapses).
pub async fn partition(
    exec: &dyn Executor,
    peers: &[IpAddr],
    failsafe: Duration,
) -> Result<(), FaultError> {
    run_checked(
        exec,
        partition_script(peers, failsafe),
        "nftables peer partition",
    )
    .await
}

/// Removes the partition from `exec`'s host.
pub async fn heal(exec: &dyn Executor) -> Result<(), FaultError> {
    run_checked(exec, heal_script(), "removing the nftables partition").await
}

/// SIGKILLs every process of `unit` on `exec`'s host.
pub async fn kill_unit(exec: &dyn Executor, unit: &str) -> Result<(), FaultError> {
    run_checked(exec, kill_unit_script(unit), &format!("SIGKILL of {unit}")).await
}

/// SIGKILLs `unit` and keeps it down until [`release`] (or `failsafe` elapses).
pub async fn hold_down(
    exec: &dyn Executor,
    unit: &str,
    failsafe: Duration,
) -> Result<(), FaultError> {
    run_checked(
        exec,
        hold_down_script(unit, failsafe),
        &format!("holding {unit} down"),
    )
    .await
}

/// Lets a held-down `unit` run again and starts it.
pub async fn release(exec: &dyn Executor, unit: &str) -> Result<(), FaultError> {
    run_checked(
        exec,
        release_script(unit),
        &format!("starting {unit} again"),
    )
    .await
}

/// Starts `unit` again if systemd did not restart it after a kill (a no-op when it runs).
pub async fn start_unit(exec: &dyn Executor, unit: &str) -> Result<(), FaultError> {
    run_checked(
        exec,
        format!("systemctl start {}", quote(unit)),
        &format!("starting {unit}"),
    )
    .await
}

/// Patroni's graceful switchover from `leader` to `candidate`, run on `exec`'s host.
pub async fn switchover(
    exec: &dyn Executor,
    leader: &str,
    candidate: &str,
) -> Result<(), FaultError> {
    run_checked(
        exec,
        kbz_postgres::switchover_script(leader, candidate),
        &format!("Patroni switchover {leader} -> {candidate}"),
    )
    .await
}

/// Runs a rendered power command on the controller (`sh -c`).
pub async fn power(command: &str, host: &str) -> Result<(), FaultError> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| FaultError::Command {
            host: "controller".into(),
            what: format!("power command for {host}"),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FaultError::Command {
            host: "controller".into(),
            what: format!("power command for {host} (`{command}`)"),
            reason: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_drops_only_the_peers_and_heals_itself() {
        let peers: Vec<IpAddr> = vec![
            "10.0.0.12".parse().expect("ip"),
            "10.0.0.13".parse().expect("ip"),
        ];
        let s = partition_script(&peers, Duration::from_secs(75));
        assert!(s.contains("ip saddr { 10.0.0.12, 10.0.0.13 } drop;"), "{s}");
        assert!(s.contains("ip daddr { 10.0.0.12, 10.0.0.13 } drop;"), "{s}");
        assert!(!s.contains("ip6"), "{s}");
        // The failsafe timer is armed before the rules go in.
        let timer = s.find("systemd-run").expect("timer");
        let rules = s.find("nft -f -").expect("rules");
        assert!(timer < rules, "{s}");
        assert!(
            s.contains("--on-active=75s /usr/sbin/nft delete table inet kbz_fault"),
            "{s}"
        );
        kbz_testkit::assert_valid_sh(&[
            s,
            heal_script(),
            kill_unit_script("patroni"),
            hold_down_script("haproxy", Duration::from_secs(95)),
            release_script("haproxy"),
        ]);
    }

    #[test]
    fn a_kill_counts_once_the_main_process_died_not_by_systemctls_status() {
        // On the lab's systemd `systemctl kill -s KILL etcd` killed etcd and still failed
        // with EIO on the cgroup: the script judges by the main process instead.
        let s = kill_unit_script("etcd");
        let pid = s
            .find("systemctl show -p MainPID --value 'etcd'")
            .expect("pid");
        let kill = s
            .find("systemctl kill -s KILL 'etcd' 2>/dev/null || true")
            .expect("kill");
        let wait = s.find("while kill -0 \"$pid\"").expect("wait");
        assert!(pid < kill && kill < wait, "{s}");
        assert!(s.contains("is not running >&2; exit 1"), "{s}");
    }

    #[test]
    fn a_held_down_unit_cannot_restart_and_comes_back_by_itself() {
        let s = hold_down_script("haproxy", Duration::from_secs(95));
        // The failsafe first, then the mask, then the kill: a restart by systemd finds the
        // unit masked, and the timer undoes both if nobody heals.
        let timer = s.find("systemd-run").expect("timer");
        let mask = s.find("systemctl mask --runtime 'haproxy'").expect("mask");
        let kill = s.find("systemctl kill -s KILL 'haproxy'").expect("kill");
        assert!(timer < mask && mask < kill, "{s}");
        assert!(s.contains("--on-active=95s"), "{s}");
        // systemd escapes `;` in a transient unit's command line (`\;` reached sh, which
        // then ran `systemctl unmask haproxy\;` and never started it): no `;` in it.
        let run_line = s
            .lines()
            .find(|l| l.starts_with("systemd-run"))
            .expect("line");
        assert!(!run_line.contains(';'), "{run_line}");
        assert!(run_line.contains("&& systemctl start"), "{run_line}");
        assert!(
            s.contains("/bin/sh -c 'systemctl unmask --runtime '"),
            "{s}"
        );
        let r = release_script("haproxy");
        assert!(
            r.find("unmask").expect("unmask") < r.find("systemctl start").expect("start"),
            "{r}"
        );
    }

    #[test]
    fn ipv6_peers_get_their_own_chains() {
        let s = partition_script(&["fd00::2".parse().expect("ip")], Duration::from_secs(5));
        assert!(s.contains("ip6 saddr { fd00::2 } drop;"), "{s}");
        assert!(!s.contains(" ip saddr"), "{s}");
    }

    #[test]
    fn power_commands_quote_their_placeholders() {
        let c = HostCommands::render(
            "ipmitool -H {host}-bmc chassis power off # {ip}",
            "db1",
            "10.0.0.11".parse().expect("ip"),
        );
        assert_eq!(c, "ipmitool -H 'db1'-bmc chassis power off # '10.0.0.11'");
    }
}
