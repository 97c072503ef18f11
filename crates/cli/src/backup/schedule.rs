//! `kbz-backup schedule install|remove|show [--systemd]`: the cron use of kbz-backup. On the
//! controller it writes `ROOT/etc/cron.d/kbz-backup` (or, with `--systemd`, one service and
//! timer per job under `ROOT/etc/systemd/system`) with the exact command lines: the daily
//! differential backup and the weekly full one (each followed by a prune) and the weekly
//! drill, at `[backup]`'s schedules. Every job runs under `flock` on
//! `STATE_DIR/backup.cron.lock`, so two never overlap; stdout goes nowhere (the JSON log
//! `STATE_DIR/logs/kbz-backup.jsonl` has every result) and stderr to
//! `STATE_DIR/logs/kbz-backup-cron.log`, so cron sees nothing on success; a failure exits
//! non-zero and kbz-backup itself sends the notification. Paths are absolute, so the line
//! runs the same in cron's minimal environment.

use kbz_core::shell::quote;
use kbz_errors::{Code, Diagnostic};
use std::path::{Path, PathBuf};

use crate::{exit, Failure};

/// The cron file under the root.
pub const CRON_FILE: &str = "etc/cron.d/kbz-backup";
/// The jobs, in file order: name, kbz-backup arguments.
pub const JOBS: &[(&str, &str)] = &[
    ("diff", "run --diff --prune"),
    ("full", "run --full --prune"),
    ("drill", "drill"),
];

/// What every job line needs: the program and its inputs, absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// kbz-backup's absolute path.
    pub program: PathBuf,
    /// `--inventory`, `--config`, `--state-dir` and their values.
    pub args: Vec<String>,
    /// The state directory (lock, logs).
    pub state_dir: PathBuf,
}

/// The schedules of `[backup]`, by job name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedules {
    /// `full_schedule`.
    pub full: String,
    /// `diff_schedule`.
    pub diff: String,
    /// `drill_schedule`.
    pub drill: String,
}

impl Schedules {
    fn of(&self, job: &str) -> &str {
        match job {
            "full" => &self.full,
            "diff" => &self.diff,
            _ => &self.drill,
        }
    }
}

/// One job's command line, as cron passes it to `/bin/sh -c`.
pub fn command(inv: &Invocation, job_args: &str) -> String {
    let s = inv.state_dir.display().to_string();
    let mut parts = vec![
        "/usr/bin/flock".to_string(),
        "-w".into(),
        "7200".into(),
        quote(&format!("{s}/backup.cron.lock")),
        quote(&inv.program.display().to_string()),
    ];
    parts.extend(inv.args.iter().map(|a| quote(a)));
    parts.push(job_args.to_string());
    format!(
        "{} >/dev/null 2>>{}",
        parts.join(" "),
        quote(&format!("{s}/logs/kbz-backup-cron.log"))
    )
}

/// The whole cron file.
pub fn cron_file(inv: &Invocation, s: &Schedules) -> String {
    let mut out = String::from(
        "# Written by `kbz-backup schedule install`; remove with `kbz-backup schedule remove`.\n\
         # Jobs never overlap (flock); results are in the state directory's logs/kbz-backup.jsonl,\n\
         # errors in logs/kbz-backup-cron.log; a failure exits non-zero and is notified.\n\
         SHELL=/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n",
    );
    for (job, args) in JOBS {
        out.push_str(&format!(
            "# {job}\n{} root {}\n",
            s.of(job),
            command(inv, args)
        ));
    }
    out
}

/// The command part of every job line of a cron file (what cron runs with `/bin/sh -c`).
pub fn cron_commands(file: &str) -> Vec<String> {
    file.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.splitn(7, ' ').collect();
            (fields.len() == 7 && fields[5] == "root").then(|| fields[6].to_string())
        })
        .collect()
}

/// systemd's `OnCalendar=` for a cron schedule of fixed minute and hour, any day of month and
/// month, and `*`, a day, a range or a list of days of the week; `None` for other shapes.
pub fn on_calendar(cron: &str) -> Option<String> {
    let f: Vec<&str> = cron.split_whitespace().collect();
    let [min, hour, "*", "*", dow] = f.as_slice() else {
        return None;
    };
    let m: u32 = min.parse().ok().filter(|m| *m < 60)?;
    let h: u32 = hour.parse().ok().filter(|h| *h < 24)?;
    const DAYS: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let day = |s: &str| s.parse::<usize>().ok().and_then(|d| DAYS.get(d).copied());
    let days = if *dow == "*" {
        String::new()
    } else {
        let mut parts = Vec::new();
        for p in dow.split(',') {
            match p.split_once('-') {
                Some((a, b)) => parts.push(format!("{}..{}", day(a)?, day(b)?)),
                None => parts.push(day(p)?.to_string()),
            }
        }
        format!("{} ", parts.join(","))
    };
    Some(format!("{days}*-*-* {h:02}:{m:02}:00"))
}

/// The unit files of `--systemd`: `(file name, content)` for each job's service and timer.
pub fn systemd_units(inv: &Invocation, s: &Schedules) -> Result<Vec<(String, String)>, Failure> {
    let mut out = Vec::new();
    for (job, args) in JOBS {
        let cal = on_calendar(s.of(job)).ok_or_else(|| {
            Failure::input(vec![Diagnostic::new(
                Code::E008,
                format!(
                    "[backup] {job}_schedule `{}` has no systemd calendar form kbz writes",
                    s.of(job)
                ),
            )
            .hint(
                "use `MINUTE HOUR * * DAYS` (e.g. `15 2 * * 1-6`), or cron without --systemd",
            )])
        })?;
        let name = format!("kbz-backup-{job}");
        out.push((
            format!("{name}.service"),
            format!(
                "# Written by `kbz-backup schedule install --systemd`.\n[Unit]\nDescription=kbz-backup {args}\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=oneshot\nExecStart=/bin/sh -c {}\n",
                systemd_arg(&command(inv, args))
            ),
        ));
        out.push((
            format!("{name}.timer"),
            format!(
                "# Written by `kbz-backup schedule install --systemd`.\n[Unit]\nDescription=kbz-backup {args} on schedule\n\n[Timer]\nOnCalendar={cal}\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
            ),
        ));
    }
    Ok(out)
}

/// One argument of an `ExecStart=` line, double-quoted with systemd's escapes.
fn systemd_arg(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
            .replace('$', "$$")
    )
}

fn io_failure(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        Diagnostic::new(Code::E022, format!("cannot {what} {}: {e}", path.display()))
            .hint("run as root to write /etc/cron.d or /etc/systemd/system, or pass --root DIR"),
        exit::FAILED,
    )
}

/// Refuses paths cron would mangle (`%` is a newline there) or that hold a newline.
pub fn check_paths(inv: &Invocation) -> Result<(), Failure> {
    let all = std::iter::once(inv.program.display().to_string()).chain(inv.args.iter().cloned());
    for a in all {
        if a.contains('%') || a.contains('\n') {
            return Err(Failure::input(vec![Diagnostic::new(
                Code::E010,
                format!("`{a}` holds `%` or a newline, which cron lines cannot carry"),
            )
            .hint("move the file to a path without them")]));
        }
    }
    Ok(())
}

/// Writes the cron file (0644) or the units under `root`; with `--systemd` and root `/`,
/// reloads systemd and enables the timers. Returns the files written.
pub fn install(
    root: &Path,
    inv: &Invocation,
    s: &Schedules,
    systemd: bool,
) -> Result<Vec<PathBuf>, Failure> {
    check_paths(inv)?;
    let logs = inv.state_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| io_failure("create", &logs, e))?;
    let mut written = Vec::new();
    if systemd {
        let dir = root.join("etc/systemd/system");
        std::fs::create_dir_all(&dir).map_err(|e| io_failure("create", &dir, e))?;
        for (name, text) in systemd_units(inv, s)? {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| io_failure("write", &p, e))?;
            written.push(p);
        }
        if root == Path::new("/") {
            systemctl(&["daemon-reload"])?;
            for (job, _) in JOBS {
                systemctl(&["enable", "--now", &format!("kbz-backup-{job}.timer")])?;
            }
        }
    } else {
        let p = root.join(CRON_FILE);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| io_failure("create", d, e))?;
        }
        std::fs::write(&p, cron_file(inv, s)).map_err(|e| io_failure("write", &p, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| io_failure("chmod", &p, e))?;
        written.push(p);
    }
    Ok(written)
}

/// Every file `install` may have written under `root` that exists.
pub fn installed(root: &Path) -> Vec<PathBuf> {
    let mut v = vec![root.join(CRON_FILE)];
    for (job, _) in JOBS {
        for ext in ["service", "timer"] {
            v.push(root.join(format!("etc/systemd/system/kbz-backup-{job}.{ext}")));
        }
    }
    v.into_iter().filter(|p| p.exists()).collect()
}

/// Removes the cron file and the units (timers disabled first with root `/`).
pub fn remove(root: &Path) -> Result<Vec<PathBuf>, Failure> {
    let files = installed(root);
    if root == Path::new("/") {
        for (job, _) in JOBS {
            let timer = root.join(format!("etc/systemd/system/kbz-backup-{job}.timer"));
            if timer.exists() {
                systemctl(&["disable", "--now", &format!("kbz-backup-{job}.timer")])?;
            }
        }
    }
    for p in &files {
        std::fs::remove_file(p).map_err(|e| io_failure("remove", p, e))?;
    }
    if root == Path::new("/")
        && files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "timer"))
    {
        systemctl(&["daemon-reload"])?;
    }
    Ok(files)
}

fn systemctl(args: &[&str]) -> Result<(), Failure> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| {
            Failure::new(
                Diagnostic::new(Code::E021, format!("cannot run systemctl: {e}"))
                    .hint("without systemd, schedule with cron: leave out --systemd"),
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
            .hint("see `systemctl list-timers 'kbz-backup-*'`"),
            exit::FAILED,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Invocation {
        Invocation {
            program: "/usr/local/bin/kbz-backup".into(),
            args: vec![
                "--inventory".into(),
                "/srv/kbz/servers with space.tsv".into(),
                "--state-dir".into(),
                "/srv/kbz/.kbz".into(),
            ],
            state_dir: "/srv/kbz/.kbz".into(),
        }
    }

    fn sched() -> Schedules {
        Schedules {
            full: "15 2 * * 0".into(),
            diff: "15 2 * * 1-6".into(),
            drill: "15 5 * * 0".into(),
        }
    }

    #[test]
    fn the_cron_file_has_one_locked_silent_line_per_job() {
        let f = cron_file(&inv(), &sched());
        assert!(f.contains("\n15 2 * * 1-6 root /usr/bin/flock -w 7200 '/srv/kbz/.kbz/backup.cron.lock' '/usr/local/bin/kbz-backup' '--inventory' '/srv/kbz/servers with space.tsv' '--state-dir' '/srv/kbz/.kbz' run --diff --prune >/dev/null 2>>'/srv/kbz/.kbz/logs/kbz-backup-cron.log'\n"), "{f}");
        let cmds = cron_commands(&f);
        assert_eq!(cmds.len(), 3, "{cmds:?}");
        assert!(cmds[1].contains(" run --full --prune "));
        assert!(cmds[2].contains(" drill "));
        kbz_testkit::assert_valid_sh(&cmds);
    }

    #[test]
    fn install_show_and_remove_under_a_temporary_root() {
        let root = tempfile::tempdir().expect("tmp");
        let state = tempfile::tempdir().expect("tmp");
        let mut i = inv();
        i.state_dir = state.path().to_path_buf();
        let files = install(root.path(), &i, &sched(), false).expect("cron");
        assert_eq!(files, vec![root.path().join(CRON_FILE)]);
        assert!(state.path().join("logs").is_dir());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0])
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        let units = install(root.path(), &i, &sched(), true).expect("systemd");
        assert_eq!(units.len(), 6);
        let timer =
            std::fs::read_to_string(root.path().join("etc/systemd/system/kbz-backup-diff.timer"))
                .expect("timer");
        assert!(
            timer.contains("OnCalendar=Mon..Sat *-*-* 02:15:00"),
            "{timer}"
        );
        assert_eq!(installed(root.path()).len(), 7);
        assert_eq!(remove(root.path()).expect("remove").len(), 7);
        assert!(installed(root.path()).is_empty());
        let mut bad = i.clone();
        bad.args.push("/tmp/50%.tsv".into());
        assert_eq!(
            install(root.path(), &bad, &sched(), false)
                .expect_err("%")
                .exit,
            exit::INPUT
        );
    }

    #[test]
    fn calendars() {
        assert_eq!(
            on_calendar("15 2 * * 0").as_deref(),
            Some("Sun *-*-* 02:15:00")
        );
        assert_eq!(on_calendar("5 23 * * *").as_deref(), Some("*-*-* 23:05:00"));
        assert_eq!(
            on_calendar("0 1 * * 1,3-5").as_deref(),
            Some("Mon,Wed..Fri *-*-* 01:00:00")
        );
        assert_eq!(on_calendar("*/5 * * * *"), None);
    }
}
