//! Printing a health report: a table on a terminal (one row per check, the E-code and fix
//! under each failing row, a summary line), or JSON for tools.

use kbz_core::health::HealthStatus;

use super::HealthReport;

/// The report as JSON (what `--json` prints).
pub fn json(r: &HealthReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_default()
}

/// The report as a table with a summary line.
pub fn table(r: &HealthReport) -> String {
    let rows: Vec<Vec<String>> = r
        .checks
        .iter()
        .map(|c| {
            let mut detail = c.detail.clone();
            if let (Some(code), Some(fix)) = (c.code, &c.fix) {
                if !c.is_ok() {
                    detail.push_str(&format!(" [{code}: {fix}]"));
                }
            }
            vec![
                mark(c.status).to_string(),
                c.host.clone(),
                c.component.clone(),
                c.check.clone(),
                detail,
            ]
        })
        .collect();
    let mut s = crate::ui::render_table(&["status", "host", "component", "check", "detail"], &rows);
    s.push_str(&summary(r));
    s.push('\n');
    s
}

/// One line: the verdict, failing count, hosts, round trips and time.
pub fn summary(r: &HealthReport) -> String {
    let failing = r.failing().count();
    let verdict = match r.status {
        HealthStatus::Ok => format!(
            "{} is healthy: all {} checks pass",
            r.cluster,
            r.checks.len()
        ),
        s => format!(
            "{} is {s}: {failing} of {} checks failing",
            r.cluster,
            r.checks.len()
        ),
    };
    format!(
        "{verdict}; {} hosts asked, {} round trip(s) in all (at most {} per host), {:.1}s",
        r.round_trips.per_host.len(),
        r.round_trips.total,
        r.round_trips.max_per_host,
        r.duration_ms as f64 / 1000.0
    )
}

fn mark(s: HealthStatus) -> &'static str {
    match s {
        HealthStatus::Ok => "ok",
        HealthStatus::Degraded => "DEGRADED",
        HealthStatus::Down => "DOWN",
    }
}
