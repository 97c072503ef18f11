//! `kbz-health timer install|remove`: a systemd timer on the controller that runs kbz-health
//! every minute (transition alerts, the Prometheus textfile). Units go to
//! `ROOT/etc/systemd/system`; with the real root `/` systemd is reloaded and the timer
//! enabled (or disabled before removal). Degraded and down runs exit 1 and 2, which the
//! service counts as success: the alert is the notification, not a failed unit.

use kbz_errors::{Code, Diagnostic};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{exit, Failure};

/// The unit name (`kbz-health.service` and `kbz-health.timer`).
pub const UNIT: &str = "kbz-health";

/// The two unit files under `root`.
pub fn unit_paths(root: &Path) -> (PathBuf, PathBuf) {
    let dir = root.join("etc/systemd/system");
    (
        dir.join(format!("{UNIT}.service")),
        dir.join(format!("{UNIT}.timer")),
    )
}

/// Quotes one argument for a systemd `ExecStart=` line.
fn systemd_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@".contains(c))
    {
        arg.to_string()
    } else {
        format!(
            "\"{}\"",
            arg.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('%', "%%")
                .replace('$', "$$")
        )
    }
}

/// The service unit running `argv` (absolute program path first).
pub fn service_unit(argv: &[String]) -> String {
    let exec = argv
        .iter()
        .map(|a| systemd_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "# Written by `kbz-health timer install`; remove with `kbz-health timer remove`.\n[Unit]\nDescription=kbz health check (transition alerts, Prometheus textfile)\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=oneshot\nExecStart={exec}\n# 1 degraded, 2 down: reported through the notifiers, not as a failed unit.\nSuccessExitStatus=1 2\n"
    )
}

/// The timer unit: every `every` (a systemd time span such as `1min`).
pub fn timer_unit(every: &str) -> String {
    format!(
        "# Written by `kbz-health timer install`; remove with `kbz-health timer remove`.\n[Unit]\nDescription=Run kbz-health every {every}\n\n[Timer]\nOnBootSec={every}\nOnUnitActiveSec={every}\nAccuracySec=5s\n\n[Install]\nWantedBy=timers.target\n"
    )
}

fn io_failure(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        Diagnostic::new(Code::E022, format!("cannot {what} {}: {e}", path.display()))
            .hint("run as root to manage /etc/systemd/system, or pass --root DIR"),
        exit::FAILED,
    )
}

fn systemctl(args: &[&str]) -> Result<(), Failure> {
    let out = Command::new("systemctl").args(args).output().map_err(|e| {
        Failure::new(
            Diagnostic::new(Code::E021, format!("cannot run systemctl: {e}")).hint(
                "the controller needs systemd for the timer; run kbz-health from cron instead",
            ),
            exit::FAILED,
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Failure::new(
            Diagnostic::new(
                Code::E021,
                format!(
                    "systemctl {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            )
            .hint("see `systemctl status kbz-health.timer`"),
            exit::FAILED,
        ))
    }
}

/// Writes both units under `root`; with `root` = `/`, reloads systemd and enables the timer.
pub fn install(root: &Path, argv: &[String], every: &str) -> Result<Vec<PathBuf>, Failure> {
    let (service, timer) = unit_paths(root);
    if let Some(dir) = service.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_failure("create", dir, e))?;
    }
    std::fs::write(&service, service_unit(argv)).map_err(|e| io_failure("write", &service, e))?;
    std::fs::write(&timer, timer_unit(every)).map_err(|e| io_failure("write", &timer, e))?;
    if root == Path::new("/") {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", &format!("{UNIT}.timer")])?;
    }
    Ok(vec![service, timer])
}

/// Disables the timer (with `root` = `/`) and removes both units; absent units are fine.
pub fn remove(root: &Path) -> Result<Vec<PathBuf>, Failure> {
    let (service, timer) = unit_paths(root);
    if root == Path::new("/") && timer.exists() {
        systemctl(&["disable", "--now", &format!("{UNIT}.timer")])?;
    }
    let mut removed = Vec::new();
    for p in [timer, service] {
        match std::fs::remove_file(&p) {
            Ok(()) => removed.push(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_failure("remove", &p, e)),
        }
    }
    if root == Path::new("/") {
        systemctl(&["daemon-reload"])?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_and_remove_under_a_temporary_root() {
        let root = tempfile::tempdir().expect("tmp");
        let argv = vec![
            "/usr/local/bin/kbz-health".to_string(),
            "--inventory".to_string(),
            "/srv/kbz/servers with space.tsv".to_string(),
        ];
        let written = install(root.path(), &argv, "1min").expect("install");
        assert_eq!(written.len(), 2);
        let service = std::fs::read_to_string(&written[0]).expect("service");
        assert!(service.contains("ExecStart=/usr/local/bin/kbz-health --inventory \"/srv/kbz/servers with space.tsv\"\n"), "{service}");
        assert!(service.contains("SuccessExitStatus=1 2"));
        let timer = std::fs::read_to_string(&written[1]).expect("timer");
        assert!(timer.contains("OnUnitActiveSec=1min") && timer.contains("WantedBy=timers.target"));
        let removed = remove(root.path()).expect("remove");
        assert_eq!(removed.len(), 2);
        assert!(!written[0].exists() && !written[1].exists());
        assert!(remove(root.path()).expect("again").is_empty());
    }
}
