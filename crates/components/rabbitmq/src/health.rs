//! kbz-health for RabbitMQ: per node whether the RabbitMQ application runs (what
//! `rabbitmq-diagnostics check_running` asks), its local memory and disk alarms (as
//! `check_local_alarms`) and its view of the membership (every expected node running, no
//! partition); for the cluster, a majority of nodes running. All three come from one
//! `rabbitmqctl eval` per host ([`scripts::health`]: one Erlang VM, not three); this module
//! judges the answers.

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

/// The probe of one host.
pub fn probes(layout: &Layout, host: &Host) -> Vec<Probe> {
    vec![Probe::new("node", scripts::health(layout, host))]
}

/// Judges the answers of every RabbitMQ host.
pub fn checks(_ctx: &Context, raw: &HealthRaw<'_>, layout: &Layout) -> Vec<HealthCheck> {
    let hosts: Vec<&Host> = raw.hosts().collect();
    let expected: Vec<String> = hosts.iter().map(|h| layout.node(h)).collect();
    let mut out = Vec::new();
    let mut running = 0usize;
    for h in &hosts {
        let n = layout.node(h);
        let o = match raw.get(&h.hostname, "node") {
            Ok(o) => observe::parse_observation(&o.text),
            Err(r) => {
                out.push(HealthCheck::failing(
                    HealthStatus::Degraded,
                    C,
                    &h.hostname,
                    "rabbitmq node",
                    format!("not asked: {r}"),
                    Code::E040,
                    FIX_NODE,
                ));
                continue;
            }
        };
        let (up, detail) = match &o.running {
            Ok(true) => (true, format!("{n} running")),
            Ok(false) => (
                false,
                format!("{n} is not running: the RabbitMQ application is stopped"),
            ),
            Err(t) => (false, format!("{n} is not running: {t}")),
        };
        if up {
            running += 1;
        }
        out.push(HealthCheck::verdict(
            up,
            HealthStatus::Degraded,
            C,
            &h.hostname,
            "rabbitmq node",
            detail,
            Code::E040,
            FIX_NODE,
        ));
        // A node that does not run has no alarms to judge: its node check said why.
        let alarms = match &o.local_alarms {
            _ if !up => None,
            Ok(a) if a.is_empty() => Some((true, "no memory or disk alarm".to_string())),
            Ok(a) => Some((false, format!("resource alarm: {}", a.join(", ")))),
            Err(t) => Some((false, first_line(t))),
        };
        if let Some((ok, detail)) = alarms {
            out.push(HealthCheck::verdict(
                ok,
                HealthStatus::Degraded,
                C,
                &h.hostname,
                "local alarms",
                detail,
                Code::E040,
                FIX_ALARM,
            ));
        }
        let (ok, code, detail) = match &o.status {
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
