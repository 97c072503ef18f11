//! The node_exporter textfile format (also served on `/metrics`): one
//! `kbz_health_check{component,host,check}` gauge per check (1 ok, 0 not), its status
//! (`kbz_health_check_status`: 0 ok, 1 degraded, 2 down), every figure a check measured
//! (`kbz_replication_lag_bytes{component,host}`, ...), the cluster's status and the run's
//! round trips and duration. Written atomically (a temporary file renamed into place).

use kbz_core::health::HealthStatus;
use std::collections::BTreeMap;
use std::path::Path;

use super::HealthReport;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn level(s: HealthStatus) -> u8 {
    match s {
        HealthStatus::Ok => 0,
        HealthStatus::Degraded => 1,
        HealthStatus::Down => 2,
    }
}

/// The metrics text.
pub fn render(r: &HealthReport, now_unix: u64) -> String {
    let mut s = String::new();
    let cluster = label(&r.cluster);
    s.push_str("# HELP kbz_health_check 1 when the check passes, 0 when it does not.\n# TYPE kbz_health_check gauge\n");
    for c in &r.checks {
        s.push_str(&format!(
            "kbz_health_check{{component=\"{}\",host=\"{}\",check=\"{}\"}} {}\n",
            label(&c.component),
            label(&c.host),
            label(&c.check),
            u8::from(c.is_ok())
        ));
    }
    s.push_str("# HELP kbz_health_check_status Status of the check: 0 ok, 1 degraded, 2 down.\n# TYPE kbz_health_check_status gauge\n");
    for c in &r.checks {
        s.push_str(&format!(
            "kbz_health_check_status{{component=\"{}\",host=\"{}\",check=\"{}\"}} {}\n",
            label(&c.component),
            label(&c.host),
            label(&c.check),
            level(c.status)
        ));
    }
    let mut metrics: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in &r.checks {
        for (name, v) in &c.metrics {
            metrics.entry(name).or_default().push(format!(
                "kbz_{name}{{component=\"{}\",host=\"{}\"}} {v}\n",
                label(&c.component),
                label(&c.host)
            ));
        }
    }
    for (name, lines) in metrics {
        s.push_str(&format!(
            "# HELP kbz_{name} Measured by kbz-health.\n# TYPE kbz_{name} gauge\n"
        ));
        for l in lines {
            s.push_str(&l);
        }
    }
    s.push_str(&format!(
        "# HELP kbz_health_status Worst status of the cluster: 0 ok, 1 degraded, 2 down.\n# TYPE kbz_health_status gauge\nkbz_health_status{{cluster=\"{cluster}\"}} {}\n",
        level(r.status)
    ));
    s.push_str(&format!(
        "# HELP kbz_health_round_trips Commands run on the hosts by the last health run.\n# TYPE kbz_health_round_trips gauge\nkbz_health_round_trips{{cluster=\"{cluster}\"}} {}\n",
        r.round_trips.total
    ));
    s.push_str(&format!(
        "# HELP kbz_health_duration_seconds Wall time of the last health run.\n# TYPE kbz_health_duration_seconds gauge\nkbz_health_duration_seconds{{cluster=\"{cluster}\"}} {}\n",
        r.duration_ms as f64 / 1000.0
    ));
    s.push_str(&format!(
        "# HELP kbz_health_last_run_timestamp_seconds When the last health run finished.\n# TYPE kbz_health_last_run_timestamp_seconds gauge\nkbz_health_last_run_timestamp_seconds{{cluster=\"{cluster}\"}} {now_unix}\n"
    ));
    s
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, then a
/// rename (node_exporter never reads half a file).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kbz.prom".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
