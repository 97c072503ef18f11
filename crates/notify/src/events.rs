//! Ready-made notifications for what kbz does: install start / success / failure, health
//! reports, backups and failovers. Each helper picks the level and writes title and text;
//! send the result with [`crate::Notifiers::send`].

use std::time::Duration;

use kbz_core::Level;
use kbz_errors::Diagnostic;
use serde::Serialize;

/// A level, title and message, ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Severity (decides which targets receive it).
    pub level: Level,
    /// One-line title.
    pub title: String,
    /// Body text.
    pub message: String,
}

/// The state of one health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working as intended.
    Ok,
    /// Working with reduced redundancy (a replica down, a member lagging).
    Degraded,
    /// Not working.
    Down,
}

/// One line of a health report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    /// What was checked (`postgres`, `redis sentinel quorum`).
    pub component: String,
    /// The host, when the check is about one host.
    pub host: Option<String>,
    /// The outcome.
    pub status: HealthStatus,
    /// A short explanation (`replication lag 0 B`, `connection refused`).
    pub detail: String,
}

/// A finished backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupSummary {
    /// Where it was stored (`s3://kbz-backups/postgres/2026-11-26T03:00Z`).
    pub location: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// How long it took.
    pub duration: Duration,
}

/// A finished failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverSummary {
    /// The primary before.
    pub old_primary: String,
    /// The primary after.
    pub new_primary: String,
    /// How long writes were refused.
    pub downtime: Duration,
    /// Acknowledged writes missing afterwards (the lost-write check); anything above 0 is
    /// data loss.
    pub lost_writes: u64,
}

impl Event {
    /// An event with the given parts.
    pub fn new(level: Level, title: impl Into<String>, message: impl Into<String>) -> Self {
        Event {
            level,
            title: title.into(),
            message: message.into(),
        }
    }

    /// `info`: an install began.
    pub fn install_started(cluster: &str, hosts: usize, modules: &[&str]) -> Self {
        let message = if modules.is_empty() {
            format!("Installing on {hosts} host(s).")
        } else {
            format!(
                "Installing {} module(s) on {hosts} host(s): {}.",
                modules.len(),
                modules.join(", ")
            )
        };
        Event::new(
            Level::Info,
            format!("kbz install started on {cluster}"),
            message,
        )
    }

    /// `info`: an install finished.
    pub fn install_succeeded(cluster: &str, duration: Duration, changed: usize) -> Self {
        Event::new(
            Level::Info,
            format!("kbz install succeeded on {cluster}"),
            format!(
                "Finished in {}; {changed} change(s) applied.",
                format_duration(duration)
            ),
        )
    }

    /// `error`: an install failed; the title carries the E-code.
    pub fn install_failed(cluster: &str, error: &Diagnostic, duration: Duration) -> Self {
        Event::new(
            Level::Error,
            format!("kbz install failed on {cluster}: {}", error.code),
            format!(
                "{}\n\nFailed after {}. Details: `kbz-install explain {}`.",
                error.render_plain(),
                format_duration(duration),
                error.code
            ),
        )
    }

    /// A health report: `info` when every check passes, `warn` when something is degraded,
    /// `critical` when something is down. Failing checks are listed first.
    pub fn health_report(cluster: &str, checks: &[HealthCheck]) -> Self {
        let worst = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Ok);
        let failing = checks
            .iter()
            .filter(|c| c.status != HealthStatus::Ok)
            .count();
        let level = match worst {
            HealthStatus::Ok => Level::Info,
            HealthStatus::Degraded => Level::Warn,
            HealthStatus::Down => Level::Critical,
        };
        let title = if failing == 0 {
            format!("{cluster} is healthy: all {} checks pass", checks.len())
        } else {
            format!(
                "{cluster} health: {failing} of {} checks failing",
                checks.len()
            )
        };
        let mut sorted: Vec<&HealthCheck> = checks.iter().collect();
        sorted.sort_by_key(|c| std::cmp::Reverse(c.status));
        let lines: Vec<String> = sorted
            .iter()
            .map(|c| {
                let mark = match c.status {
                    HealthStatus::Ok => "ok      ",
                    HealthStatus::Degraded => "DEGRADED",
                    HealthStatus::Down => "DOWN    ",
                };
                let host = c
                    .host
                    .as_deref()
                    .map(|h| format!(" on {h}"))
                    .unwrap_or_default();
                format!("{mark} {}{host}: {}", c.component, c.detail)
            })
            .collect();
        Event::new(level, title, lines.join("\n"))
    }

    /// A backup of `component`: `info` with location, size and duration, or `error` with
    /// the E-code.
    pub fn backup_result(
        cluster: &str,
        component: &str,
        result: Result<&BackupSummary, &Diagnostic>,
    ) -> Self {
        match result {
            Ok(b) => Event::new(
                Level::Info,
                format!("Backup of {component} on {cluster} succeeded"),
                format!(
                    "{} in {}, stored at {}.",
                    kbz_core::backup::repo::human(b.size_bytes),
                    format_duration(b.duration),
                    b.location
                ),
            ),
            Err(d) => Event::new(
                Level::Error,
                format!("Backup of {component} on {cluster} failed: {}", d.code),
                format!(
                    "{}\n\nDetails: `kbz-install explain {}`.",
                    d.render_plain(),
                    d.code
                ),
            ),
        }
    }

    /// A failover of `service`: `info` when no acknowledged write was lost, `critical` when
    /// some were, `error` when the failover itself failed.
    pub fn failover_result(
        cluster: &str,
        service: &str,
        result: Result<&FailoverSummary, &Diagnostic>,
    ) -> Self {
        match result {
            Ok(f) if f.lost_writes > 0 => Event::new(
                Level::Critical,
                format!(
                    "Failover of {service} on {cluster} lost {} acknowledged write(s)",
                    f.lost_writes
                ),
                format!(
                    "Primary moved {} -> {} with {} of downtime, but {} acknowledged write(s) \
                     are missing. Check synchronous replication.",
                    f.old_primary,
                    f.new_primary,
                    format_duration(f.downtime),
                    f.lost_writes
                ),
            ),
            Ok(f) => Event::new(
                Level::Info,
                format!("Failover of {service} on {cluster} succeeded"),
                format!(
                    "Primary moved {} -> {} with {} of downtime; no acknowledged write lost.",
                    f.old_primary,
                    f.new_primary,
                    format_duration(f.downtime)
                ),
            ),
            Err(d) => Event::new(
                Level::Error,
                format!("Failover of {service} on {cluster} failed: {}", d.code),
                format!(
                    "{}\n\nDetails: `kbz-install explain {}`.",
                    d.render_plain(),
                    d.code
                ),
            ),
        }
    }
}

/// `850ms`, `12.3s`, `4m 12s`, `1h 02m 03s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h == 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{h}h {m:02}m {s:02}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_errors::Code;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(252)), "4m 12s");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h 02m 03s");
    }

    #[test]
    fn install_events() {
        let e = Event::install_started("prod", 6, &["base", "keepalived"]);
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.title, "kbz install started on prod");
        assert_eq!(
            e.message,
            "Installing 2 module(s) on 6 host(s): base, keepalived."
        );
        let e = Event::install_succeeded("prod", Duration::from_secs(252), 17);
        assert_eq!(e.message, "Finished in 4m 12s; 17 change(s) applied.");
        let d = Diagnostic::new(Code::E020, "download failed").on_host("db1");
        let e = Event::install_failed("prod", &d, Duration::from_secs(61));
        assert_eq!(e.level, Level::Error);
        assert_eq!(e.title, "kbz install failed on prod: E020");
        assert!(
            e.message.starts_with("E020 [db1]: download failed"),
            "{}",
            e.message
        );
        assert!(e.message.contains("after 1m 01s"), "{}", e.message);
    }

    #[test]
    fn health_levels_follow_the_worst_check() {
        let check = |c: &str, s| HealthCheck {
            component: c.into(),
            host: Some("db1".into()),
            status: s,
            detail: "d".into(),
        };
        let ok = Event::health_report("prod", &[check("a", HealthStatus::Ok)]);
        assert_eq!(ok.level, Level::Info);
        assert_eq!(ok.title, "prod is healthy: all 1 checks pass");
        let e = Event::health_report(
            "prod",
            &[
                check("a", HealthStatus::Ok),
                check("b", HealthStatus::Degraded),
            ],
        );
        assert_eq!(e.level, Level::Warn);
        assert!(
            e.message.starts_with("DEGRADED b on db1: d"),
            "{}",
            e.message
        );
        let e = Event::health_report(
            "prod",
            &[
                check("a", HealthStatus::Down),
                check("b", HealthStatus::Degraded),
            ],
        );
        assert_eq!(e.level, Level::Critical);
        assert_eq!(e.title, "prod health: 2 of 2 checks failing");
    }

    #[test]
    fn backup_and_failover() {
        let b = BackupSummary {
            location: "s3://b/pg/1".into(),
            size_bytes: 2048,
            duration: Duration::from_secs(3),
        };
        let e = Event::backup_result("prod", "postgres", Ok(&b));
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.message, "2.0 KiB in 3.0s, stored at s3://b/pg/1.");
        let d = Diagnostic::new(Code::E020, "minio refused");
        let e = Event::backup_result("prod", "postgres", Err(&d));
        assert_eq!(e.level, Level::Error);
        assert!(e.title.ends_with("failed: E020"), "{}", e.title);

        let mut f = FailoverSummary {
            old_primary: "db1".into(),
            new_primary: "db2".into(),
            downtime: Duration::from_millis(4200),
            lost_writes: 0,
        };
        let e = Event::failover_result("prod", "postgres", Ok(&f));
        assert_eq!(e.level, Level::Info);
        assert!(e.message.contains("db1 -> db2 with 4.2s"), "{}", e.message);
        f.lost_writes = 3;
        let e = Event::failover_result("prod", "postgres", Ok(&f));
        assert_eq!(e.level, Level::Critical);
        assert!(e.title.contains("lost 3 acknowledged"), "{}", e.title);
        let e = Event::failover_result("prod", "postgres", Err(&d));
        assert_eq!(e.level, Level::Error);
    }
}
