//! `[failover]` of kbz.toml: kbz-failover's budgets (what a measured failover may cost) and
//! the power commands of the power-cut scenarios.

use super::key_line;
use kbz_errors::{Code, Diagnostic};
use serde::{Deserialize, Serialize};

/// `[failover]`: what a measured failover may cost (a run outside makes kbz-failover exit
/// non-zero with the breach's E-code) and the commands that cut and restore a host's power.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// Command run on the controller to power a host off (`{host}` and `{ip}` are replaced,
    /// shell-quoted), e.g. `ipmitool -H {host}-bmc chassis power off`. Without it the
    /// power-cut scenarios refuse to run.
    pub power_off: Option<String>,
    /// Command that powers the host on again.
    pub power_on: Option<String>,
    /// Acknowledged PostgreSQL commits a run may lose (synchronous mode: 0).
    pub postgres_lost: u64,
    /// Longest PostgreSQL write gap after a crash or partition of the leader, in seconds.
    pub postgres_crash_gap_secs: f64,
    /// Longest PostgreSQL write gap during a graceful switchover, in seconds.
    pub postgres_switchover_gap_secs: f64,
    /// Longest PostgreSQL write gap while one etcd member is down, in seconds.
    pub etcd_member_gap_secs: f64,
    /// Longest Redis write gap after the master fails, in seconds.
    pub redis_gap_secs: f64,
    /// Redis replicates asynchronously: an acknowledged write may be lost when it was
    /// acknowledged at most this many seconds before the fault. Default: the installed
    /// `min-replicas-max-lag`.
    pub redis_lost_window_secs: Option<f64>,
    /// Longest RabbitMQ publish gap (no publisher confirm through the VIP) after a power
    /// cut of the scratch quorum queue's leader, in seconds. Confirmed messages are never
    /// lost (quorum queues): the loss budget is 0.
    pub rabbitmq_gap_secs: f64,
    /// Longest time a VIP may answer nowhere (its holder crashed, its HAProxy is down), in
    /// seconds.
    pub vip_gap_secs: f64,
    /// Longest MariaDB write gap through its VIP after the Galera node it writes to fails,
    /// in seconds.
    pub galera_gap_secs: f64,
    /// Longest time the Kubernetes API answers nowhere through its VIP (`/readyz`) while a
    /// master is down, in seconds.
    pub k8s_api_gap_secs: f64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            power_off: None,
            power_on: None,
            postgres_lost: 0,
            postgres_crash_gap_secs: 35.0,
            postgres_switchover_gap_secs: 5.0,
            etcd_member_gap_secs: 5.0,
            redis_gap_secs: 15.0,
            redis_lost_window_secs: None,
            rabbitmq_gap_secs: 30.0,
            vip_gap_secs: 5.0,
            k8s_api_gap_secs: 10.0,
            galera_gap_secs: 20.0,
        }
    }
}

/// The keys of `[failover]` that are durations in seconds.
const FAILOVER_SECS: &[&str] = &[
    "postgres_crash_gap_secs",
    "postgres_switchover_gap_secs",
    "etcd_member_gap_secs",
    "redis_gap_secs",
    "redis_lost_window_secs",
    "vip_gap_secs",
    "k8s_api_gap_secs",
    "galera_gap_secs",
    "rabbitmq_gap_secs",
];

impl FailoverConfig {
    /// Semantic checks (E008 with the line): seconds finite and not negative, power commands
    /// set together and naming the host.
    pub fn check(&self, path: &str, text: Option<&str>) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let at = |key: &str| text.and_then(|t| key_line(t, "failover", key));
        let mut bad = |_table: &str, key: &str, msg: String, hint: String| {
            out.push(
                Diagnostic::new(Code::E008, msg)
                    .at(path, at(key))
                    .hint(hint),
            );
        };
        let f = self;
        for (key, v) in f.seconds() {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    bad(
                        "failover",
                        key,
                        format!("[failover] {key} = {v} is not a number of seconds"),
                        "give a number of seconds of 0 or more, e.g. `35` or `2.5`, or remove \
                         the line for the default"
                            .into(),
                    );
                }
            }
        }
        match (&f.power_off, &f.power_on) {
            (Some(_), None) | (None, Some(_)) => bad(
                "failover",
                if f.power_off.is_some() {
                    "power_off"
                } else {
                    "power_on"
                },
                "[failover] power_off and power_on go together: a host kbz powers off must \
                 come back"
                    .into(),
                "set both, e.g. `power_off = \"ipmitool -H {host}-bmc chassis power off\"` and \
                 `power_on = \"ipmitool -H {host}-bmc chassis power on\"`"
                    .into(),
            ),
            _ => {}
        }
        for (key, cmd) in [("power_off", &f.power_off), ("power_on", &f.power_on)] {
            if let Some(cmd) = cmd {
                if !cmd.contains("{host}") && !cmd.contains("{ip}") {
                    bad(
                        "failover",
                        key,
                        format!("[failover] {key} `{cmd}` names no host"),
                        "put `{host}` (the inventory name) or `{ip}` (its address) where the \
                         command takes the machine, e.g. `cargo xtask lab kill {host}`"
                            .into(),
                    );
                }
            }
        }
        out
    }

    fn seconds(&self) -> [(&'static str, Option<f64>); 9] {
        [
            (FAILOVER_SECS[0], Some(self.postgres_crash_gap_secs)),
            (FAILOVER_SECS[1], Some(self.postgres_switchover_gap_secs)),
            (FAILOVER_SECS[2], Some(self.etcd_member_gap_secs)),
            (FAILOVER_SECS[3], Some(self.redis_gap_secs)),
            (FAILOVER_SECS[4], self.redis_lost_window_secs),
            (FAILOVER_SECS[5], Some(self.vip_gap_secs)),
            (FAILOVER_SECS[6], Some(self.k8s_api_gap_secs)),
            (FAILOVER_SECS[7], Some(self.galera_gap_secs)),
            (FAILOVER_SECS[8], Some(self.rabbitmq_gap_secs)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn parse(body: &str) -> Result<Config, Vec<kbz_errors::Diagnostic>> {
        Config::parse(
            "kbz.toml",
            &format!("[cluster]\nname = \"t\"\n\n[failover]\n{body}"),
        )
    }

    #[test]
    fn defaults_are_the_documented_budgets() {
        let f = parse("").expect("empty [failover]").failover;
        assert_eq!(f.postgres_lost, 0);
        assert_eq!(f.postgres_crash_gap_secs, 35.0);
        assert_eq!(f.postgres_switchover_gap_secs, 5.0);
        assert_eq!(f.redis_gap_secs, 15.0);
        assert_eq!(f.vip_gap_secs, 5.0);
        assert_eq!(f.redis_lost_window_secs, None);
        assert_eq!(f.k8s_api_gap_secs, 10.0);
        let f = parse("redis_gap_secs = 20\nvip_gap_secs = 2.5\n")
            .expect("integers and decimals")
            .failover;
        assert_eq!((f.redis_gap_secs, f.vip_gap_secs), (20.0, 2.5));
    }

    #[test]
    fn a_budget_that_cannot_parse_names_its_line() {
        let e = parse("vip_gap_secs = 5\nredis_gap_secs = \"15 s\"\n").expect_err("a string");
        let d = &e[0];
        assert_eq!(d.code, kbz_errors::Code::E008);
        let shown = d.render_plain();
        assert!(shown.contains("kbz.toml:6"), "{shown}");
        assert!(shown.contains("redis_gap_secs"), "{shown}");
        let e = parse("vip_gap_secs = -1\n").expect_err("negative");
        let shown = e[0].render_plain();
        assert!(
            shown.contains("kbz.toml:5") && shown.contains("vip_gap_secs"),
            "{shown}"
        );
        let e = parse("vip_gap = 5\n").expect_err("unknown key");
        assert!(
            e[0].render_plain().contains("vip_gap_secs"),
            "{}",
            e[0].render_plain()
        );
    }

    #[test]
    fn power_commands_go_together_and_name_the_host() {
        let e = parse("power_off = \"lab kill {host}\"\n").expect_err("alone");
        assert!(
            e[0].render_plain().contains("go together"),
            "{}",
            e[0].render_plain()
        );
        let e = parse("power_off = \"poweroff\"\npower_on = \"lab start {ip}\"\n")
            .expect_err("no host");
        assert!(
            e[0].render_plain().contains("kbz.toml:5"),
            "{}",
            e[0].render_plain()
        );
        parse("power_off = \"lab kill {host}\"\npower_on = \"lab start {host}\"\n").expect("both");
    }
}
