//! Transition alerts: the last run's status is kept in `STATE_DIR/health-state.json`; a run
//! notifies only when the status changes (healthy -> degraded -> down and back), so a run
//! every minute from a timer does not repeat an alert.

use kbz_core::health::HealthStatus;
use kbz_notify::Event;
use std::path::{Path, PathBuf};

use super::HealthReport;

/// The state file in a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("health-state.json")
}

/// The status the last run recorded, if any (an unreadable file counts as none).
pub fn last(state_dir: &Path) -> Option<HealthStatus> {
    let text = std::fs::read_to_string(path(state_dir)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    HealthStatus::parse(v.get("status")?.as_str()?)
}

/// Records this run's status (0600, written atomically).
pub fn record(state_dir: &Path, r: &HealthReport) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let failing: Vec<String> = r
        .failing()
        .map(|c| format!("{} {} {}", c.component, c.host, c.check))
        .collect();
    let body = serde_json::json!({
        "status": r.status.as_str(),
        "failing": failing,
        "at": super::prom::now_unix(),
    });
    kbz_core::secret::write_private(&path(state_dir), body.to_string().as_bytes())
}

/// The alert to send, when `now` differs from `before` (a first run alerts only when it is
/// not healthy).
pub fn transition(before: Option<HealthStatus>, r: &HealthReport) -> Option<Event> {
    let changed = match before {
        None => r.status != HealthStatus::Ok,
        Some(b) => b != r.status,
    };
    if !changed {
        return None;
    }
    let checks: Vec<kbz_notify::HealthCheck> = r
        .checks
        .iter()
        .map(|c| kbz_notify::HealthCheck {
            component: format!("{} {}", c.component, c.check),
            host: (c.host != kbz_core::health::CLUSTER).then(|| c.host.clone()),
            status: match c.status {
                HealthStatus::Ok => kbz_notify::HealthStatus::Ok,
                HealthStatus::Degraded => kbz_notify::HealthStatus::Degraded,
                HealthStatus::Down => kbz_notify::HealthStatus::Down,
            },
            detail: match c.code {
                Some(code) if !c.is_ok() => format!("{code} {}", c.detail),
                _ => c.detail.clone(),
            },
        })
        .collect();
    let mut e = Event::health_report(&r.cluster, &checks);
    if let Some(b) = before {
        e.title = format!("{} (was {b})", e.title);
    }
    Some(e)
}
