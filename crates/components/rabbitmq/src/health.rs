//! kbz-health for RabbitMQ: per node `rabbitmq-diagnostics check_running` and
//! `check_local_alarms` and its view of the membership (every expected node running, no
//! partition); for the cluster, a majority of nodes running. Pure judgement of the probes'
//! answers (one batched round trip per host).

use kbz_core::component::{HealthCheck, HealthRaw, Probe};
use kbz_core::health::{HealthStatus, CLUSTER};
use kbz_core::{Context, Host};
use kbz_errors::Code;

use crate::layout::Layout;
use crate::observe::{self, first_line};
use crate::scripts;

const C: &str = "rabbitmq";
const FIX_NODE: &str =
    "`systemctl status rabbitmq-server` and `journalctl -u rabbitmq-server -n 100` \
     on the host; `sudo rabbitmq-diagnostics status`";
const FIX_ALARM: &str = "a memory or disk alarm blocks publishers: `sudo rabbitmq-diagnostics \
     alarms`, free disk under /var/lib/rabbitmq or memory, then the alarm clears by itself";
const FIX_MEMBERS: &str = "`sudo rabbitmqctl cluster_status` on each node; start stopped nodes \
     one at a time; `kbz-install --only rabbitmq` joins a node that started alone";

/// The probes of one host.
pub fn probes(layout: &Layout, host: &Host) -> Vec<Probe> {
    vec![
        Probe::new("running", scripts::health_running(layout, host)),
        Probe::new("alarms", scripts::health_alarms(layout, host)),
        Probe::new("cluster", scripts::health_cluster(layout, host)),
    ]
}

/// Judges the answers of every RabbitMQ host.
pub fn checks(_ctx: &Context, raw: &HealthRaw<'_>, layout: &Layout) -> Vec<HealthCheck> {
    let hosts: Vec<&Host> = raw.hosts().collect();
    let expected: Vec<String> = hosts.iter().map(|h| layout.node(h)).collect();
    let mut out = Vec::new();
    let mut running = 0usize;
    for h in &hosts {
        let n = layout.node(h);
        match raw.get(&h.hostname, "running") {
            Ok(o) if o.success() => {
                running += 1;
                out.push(HealthCheck::ok(
                    C,
                    &h.hostname,
                    "rabbitmq node",
                    format!("{n} running"),
                ));
            }
            Ok(o) => out.push(HealthCheck::failing(
                HealthStatus::Degraded,
                C,
                &h.hostname,
                "rabbitmq node",
                format!("{n} is not running: {}", first_line(&o.text)),
                Code::E040,
                FIX_NODE,
            )),
            Err(r) => out.push(HealthCheck::failing(
                HealthStatus::Degraded,
                C,
                &h.hostname,
                "rabbitmq node",
                format!("not asked: {r}"),
                Code::E040,
                FIX_NODE,
            )),
        }
        if let Ok(o) = raw.get(&h.hostname, "alarms") {
            out.push(HealthCheck::verdict(
                o.success(),
                HealthStatus::Degraded,
                C,
                &h.hostname,
                "local alarms",
                if o.success() {
                    "no memory or disk alarm".to_string()
                } else {
                    first_line(&o.text)
                },
                Code::E040,
                FIX_ALARM,
            ));
        }
        if let Ok(o) = raw.get(&h.hostname, "cluster") {
            let (ok, code, detail) = match observe::parse_cluster_status(&o.text) {
                Err(t) => (false, Code::E040, format!("no cluster status: {t}")),
                Ok(s) if !s.partitioned.is_empty() => (
                    false,
                    Code::E036,
                    format!("sees a network partition from {}", s.partitioned.join(", ")),
                ),
                Ok(s) => {
                    let m = observe::missing(&expected, &s.running_nodes);
                    if m.is_empty() {
                        (
                            true,
                            Code::E035,
                            format!(
                                "{} of {} nodes running",
                                s.running_nodes.len(),
                                expected.len()
                            ),
                        )
                    } else {
                        (
                            false,
                            Code::E035,
                            format!(
                                "{} of {} nodes running; not running here: {}",
                                expected.len() - m.len(),
                                expected.len(),
                                m.join(", ")
                            ),
                        )
                    }
                }
            };
            out.push(HealthCheck::verdict(
                ok,
                HealthStatus::Degraded,
                C,
                &h.hostname,
                "cluster membership",
                detail,
                code,
                FIX_MEMBERS,
            ));
        }
    }
    let need = expected.len() / 2 + 1;
    out.push(
        HealthCheck::verdict(
            !expected.is_empty() && running >= need,
            HealthStatus::Down,
            C,
            CLUSTER,
            "quorum",
            format!(
                "{running} of {} nodes running (a majority is {need})",
                expected.len()
            ),
            Code::E036,
            FIX_MEMBERS,
        )
        .metric("rabbitmq_nodes_running", running as f64),
    );
    out
}
