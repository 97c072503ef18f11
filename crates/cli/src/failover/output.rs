//! kbz-failover's output: the scenario list, one line per run, the summary table with the
//! budget, the JSON document, the E-coded diagnostics of the breaches and the notification.

use kbz_core::config::FailoverConfig;
use kbz_errors::{Code, Diagnostic};
use kbz_faults::{RunReport, Scenario};
use kbz_notify::{Event, FailoverSummary};
use std::time::Duration;

use super::Outcome;
use crate::ui::render_table;

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

/// `kbz-failover list`: scenario, what it does, its budget (table or JSON).
pub fn list(all: &[Scenario], cfg: &FailoverConfig, json: bool) -> String {
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "fault": s.fault,
                    "victim": s.victim,
                    "description": s.describe(),
                    "budget": s.budget(cfg),
                    "needs_power_commands": s.needs_commands(),
                })
            })
            .collect();
        return serde_json::to_string_pretty(&serde_json::json!({ "scenarios": v }))
            .unwrap_or_default()
            + "\n";
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            let b = s.budget(cfg);
            vec![s.name.clone(), b.describe(), s.describe()]
        })
        .collect();
    render_table(&["scenario", "budget", "fault"], &rows)
}

/// One line per run.
pub fn run_line(r: &RunReport) -> String {
    format!(
        "run {}: victim {} ({} -> {}), acked {}, lost {}, unexpected {}, new leader {} s,{} writes resumed {} s, longest gap {:.1} s, victim back {} s, two primaries {}{}",
        r.run,
        r.victim,
        r.leader_before,
        r.leader_after,
        r.vip.acked,
        kbz_faults::budget::lost(r),
        r.vip.unexpected,
        opt(r.new_leader_secs),
        match &r.vip_holder_before {
            Some(_) => format!(" VIP moved {} s,", opt(r.vip_moved_secs)),
            None => String::new(),
        },
        opt(r.writes_resumed_secs),
        r.max_write_gap_secs,
        opt(r.victim_streaming_secs),
        if r.two_primaries_seen { "yes" } else { "no" },
        r.error.as_ref().map(|e| format!(", ERROR {e}")).unwrap_or_default()
    )
}

/// The summary table and the verdict.
pub fn table(o: &Outcome) -> String {
    let s = &o.summary;
    let rows = vec![vec![
        o.scenario.clone(),
        s.runs.to_string(),
        s.passed.to_string(),
        s.acked.to_string(),
        s.lost.max(s.lost_on_members).to_string(),
        s.unexpected.to_string(),
        format!("{:.1}", s.write_gap_median),
        format!("{:.1}", s.write_gap_max),
        opt(s.new_leader_median),
        opt(s.new_leader_max),
        s.two_primaries_runs.to_string(),
    ]];
    let mut out = render_table(
        &[
            "scenario",
            "runs",
            "passed",
            "acked",
            "lost",
            "unexpected",
            "gap med s",
            "gap max s",
            "leader med s",
            "leader max s",
            "two primaries",
        ],
        &rows,
    );
    out.push_str(&format!(
        "budget: lost <= {}, write gap <= {} s ([failover] {})\n",
        o.budget.lost, o.budget.gap_secs, o.budget.gap_key
    ));
    if let Some(jump) = &o.via {
        out.push_str(&format!("workload: through the bastion {jump}\n"));
    }
    out.push_str(if o.passed {
        "verdict: inside budget\n"
    } else {
        "verdict: NOT inside budget\n"
    });
    out
}

/// The outcome as JSON.
pub fn json(o: &Outcome) -> String {
    serde_json::to_string_pretty(o).unwrap_or_default()
}

/// One diagnostic per breach, failed run, fault not undone or interruption.
pub fn diagnostics(o: &Outcome) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = o
        .breaches
        .iter()
        .map(|b| {
            Diagnostic::new(b.code, b.message.clone()).hint(format!(
                "`kbz-install explain {}`; the figures of every run are in `kbz-failover run {} --json`",
                b.code, o.scenario
            ))
        })
        .collect();
    for e in &o.errors {
        let code = e
            .split_whitespace()
            .nth(2)
            .and_then(kbz_errors::parse_code)
            .unwrap_or(Code::E021);
        out.push(
            Diagnostic::new(code, format!("{}: {e}", o.scenario))
                .hint("the cluster was healed; see `kbz-health` and the run's JSON"),
        );
    }
    for n in &o.not_healed {
        out.push(
            Diagnostic::new(Code::E021, format!("not undone: {n}")).hint(
                "undo it by hand: `nft delete table inet kbz_fault` on the host, or power it on",
            ),
        );
    }
    if o.interrupted {
        out.push(
            Diagnostic::new(Code::E010, format!("{} was interrupted", o.scenario))
                .hint("every fault of the scenario was undone; run it again to measure"),
        );
    }
    out
}

/// `Event::failover_result` for the notifiers.
pub fn event(o: &Outcome, first: Option<&Diagnostic>) -> Event {
    let service = if o.scenario.starts_with("redis") {
        "redis"
    } else {
        "postgres"
    };
    let last = o.runs.last();
    let f = FailoverSummary {
        old_primary: last.map(|r| r.leader_before.clone()).unwrap_or_default(),
        new_primary: last.map(|r| r.leader_after.clone()).unwrap_or_default(),
        downtime: Duration::from_secs_f64(o.summary.write_gap_max.max(0.0)),
        lost_writes: o.summary.lost.max(o.summary.lost_on_members),
    };
    match first {
        // Lost writes are a critical event of their own; any other failure an error.
        Some(d) if f.lost_writes == 0 => Event::failover_result(&o.cluster, service, Err(d)),
        _ => Event::failover_result(&o.cluster, service, Ok(&f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::notifier::Level;
    use kbz_faults::{Summary, Verdict};

    fn outcome(lost: u64, gap: f64) -> Outcome {
        let s = Scenario::named("postgres-leader-crash").expect("scenario");
        let cfg = FailoverConfig::default();
        let r = RunReport {
            scenario: s.name.clone(),
            run: 1,
            victim: "db1".into(),
            leader_before: "db1".into(),
            leader_after: "db2".into(),
            vip: Verdict {
                acked: 900,
                lost,
                unexpected: 2,
                lost_sample: vec![],
            },
            max_write_gap_secs: gap,
            new_leader_secs: Some(21.5),
            victim_streaming_secs: Some(14.0),
            ..RunReport::default()
        };
        let breaches = kbz_faults::evaluate(&s, &cfg, &r);
        Outcome {
            cluster: "prod".into(),
            scenario: s.name.clone(),
            budget: s.budget(&cfg),
            summary: Summary::of(std::slice::from_ref(&r)),
            passed: breaches.is_empty(),
            runs: vec![r],
            breaches,
            errors: vec![],
            not_healed: vec![],
            interrupted: false,
            via: None,
        }
    }

    #[test]
    fn inside_budget_is_a_quiet_success() {
        let o = outcome(0, 24.0);
        assert!(diagnostics(&o).is_empty());
        let t = table(&o);
        assert!(t.contains("verdict: inside budget"), "{t}");
        assert!(
            t.contains("write gap <= 35 s ([failover] postgres_crash_gap_secs)"),
            "{t}"
        );
        let e = event(&o, None);
        assert_eq!(e.level, Level::Info);
        assert!(e.message.contains("db1 -> db2"), "{}", e.message);
        let j: serde_json::Value = serde_json::from_str(&json(&o)).expect("json");
        assert_eq!(j["passed"], true);
        assert_eq!(j["runs"][0]["vip"]["acked"], 900);
    }

    #[test]
    fn a_slow_failover_is_e067_and_lost_writes_are_critical() {
        let o = outcome(0, 40.0);
        let d = diagnostics(&o);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, Code::E072);
        assert_eq!(event(&o, d.first()).level, Level::Error);
        assert!(table(&o).contains("NOT inside budget"));

        let o = outcome(3, 10.0);
        let d = diagnostics(&o);
        assert_eq!(d[0].code, Code::E071);
        let e = event(&o, d.first());
        assert_eq!(e.level, Level::Critical);
        assert!(e.title.contains("lost 3 acknowledged"), "{}", e.title);
        let j: serde_json::Value = serde_json::from_str(&json(&o)).expect("json");
        assert_eq!(j["breaches"][0]["code"], Code::E071.to_string());
    }

    #[test]
    fn list_names_every_scenario_with_its_budget() {
        let t = list(&Scenario::all(), &FailoverConfig::default(), false);
        assert!(
            t.contains("postgres-switchover") && t.contains("gap <= 5 s"),
            "{t}"
        );
        let j: serde_json::Value =
            serde_json::from_str(&list(&Scenario::all(), &FailoverConfig::default(), true))
                .expect("json");
        assert_eq!(
            j["scenarios"].as_array().map(Vec::len),
            Some(Scenario::all().len())
        );
    }
}
