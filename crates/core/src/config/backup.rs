//! `[backup]` of kbz.toml: where kbz-backup keeps its repository (a directory on the
//! `backup`-role host, reached over SSH), how long backups are kept, whether artifacts are
//! encrypted at rest, and the cron schedules `kbz-backup schedule install` writes.

use super::key_line;
use kbz_errors::{Code, Diagnostic};
use serde::{Deserialize, Serialize};

/// `[backup]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// The repository: an absolute directory on the inventory's `backup`-role host (the
    /// first one), created 0700. Every component's backups live under `DIR/<component>/`.
    pub dir: String,
    /// Full backups kept per component, at least (the newest ones), whatever their age.
    pub keep_full: u32,
    /// Backups younger than this many days are kept too; older ones beyond `keep_full` are
    /// pruned.
    pub keep_days: u32,
    /// Encrypt artifacts at rest (age, with the `backup_encryption` key of the secrets
    /// file; pgBackRest uses its own repository cipher). On by default.
    pub encrypt: bool,
    /// Cron schedule (5 fields) of the weekly full backup.
    pub full_schedule: String,
    /// Cron schedule of the daily differential backup (components without differential
    /// backups take a full one).
    pub diff_schedule: String,
    /// Cron schedule of the weekly restore drill.
    pub drill_schedule: String,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: "/var/backups/kbz".into(),
            keep_full: 4,
            keep_days: 30,
            encrypt: true,
            full_schedule: "15 2 * * 0".into(),
            diff_schedule: "15 2 * * 1-6".into(),
            drill_schedule: "15 5 * * 0".into(),
        }
    }
}

/// The keys of `[backup]`, for "did you mean" hints.
pub const KEYS: &[&str] = &[
    "dir",
    "keep_full",
    "keep_days",
    "encrypt",
    "full_schedule",
    "diff_schedule",
    "drill_schedule",
];

/// True when `dir` is an absolute path of safe characters (letters, digits, `/._-`), no
/// `..` component and no trailing slash: it reaches shell scripts on the backup host.
pub fn safe_dir(dir: &str) -> bool {
    dir.len() > 1
        && dir.starts_with('/')
        && !dir.ends_with('/')
        && dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
        && !dir.split('/').any(|p| p == ".." || p == ".")
        && !dir.contains("//")
}

/// True when `s` is a 5-field cron schedule of digits and `* , - /` only.
pub fn cron_schedule(s: &str) -> bool {
    let fields: Vec<&str> = s.split_whitespace().collect();
    fields.len() == 5
        && fields
            .iter()
            .all(|f| f.chars().all(|c| c.is_ascii_digit() || "*,-/".contains(c)))
}

impl BackupConfig {
    /// Semantic checks (E008 with the line): the directory, retention and schedules.
    pub fn check(&self, path: &str, text: Option<&str>) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let at = |key: &str| text.and_then(|t| key_line(t, "backup", key));
        let mut bad = |key: &str, msg: String, hint: &str| {
            out.push(
                Diagnostic::new(Code::E008, msg)
                    .at(path, at(key))
                    .hint(hint),
            );
        };
        if !safe_dir(&self.dir) {
            bad(
                "dir",
                format!(
                    "[backup] dir `{}` is not an absolute directory of plain characters",
                    self.dir
                ),
                "write an absolute path of letters, digits and `/._-`, e.g. \
                 `dir = \"/var/backups/kbz\"` (no trailing slash, no `..`)",
            );
        }
        if self.keep_full == 0 {
            bad(
                "keep_full",
                "[backup] keep_full is 0: no backup would survive a prune".into(),
                "keep at least one full backup: `keep_full = 4` (the default)",
            );
        }
        for (key, v) in [
            ("full_schedule", &self.full_schedule),
            ("diff_schedule", &self.diff_schedule),
            ("drill_schedule", &self.drill_schedule),
        ] {
            if !cron_schedule(v) {
                bad(
                    key,
                    format!("[backup] {key} `{v}` is not a 5-field cron schedule"),
                    "write minute hour day-of-month month day-of-week with digits and `* , - /`, \
                     e.g. `\"15 2 * * 0\"` (Sundays at 02:15)",
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_schedules() {
        assert!(safe_dir("/var/backups/kbz"));
        for bad in [
            "relative", "/", "/a/../b", "/a b", "/a;rm", "/a/", "/a//b", "/$(x)",
        ] {
            assert!(!safe_dir(bad), "{bad}");
        }
        assert!(cron_schedule("15 2 * * 1-6"));
        assert!(cron_schedule("*/5 * * * *"));
        assert!(!cron_schedule("15 2 * *"));
        assert!(!cron_schedule("@daily"));
        assert!(!cron_schedule("1 2 3 4 5; rm"));
    }

    #[test]
    fn bad_values_are_e008_with_their_line() {
        let text = "[backup]\ndir = \"var/x\"\nkeep_full = 0\nfull_schedule = \"daily\"\n";
        let cfg: BackupConfig = toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| t.get("backup").cloned())
            .and_then(|v| v.try_into().ok())
            .expect("parse");
        let d = cfg.check("kbz.toml", Some(text));
        let lines: Vec<_> = d
            .iter()
            .map(|d| d.location.as_ref().and_then(|l| l.line))
            .collect();
        assert_eq!(lines, vec![Some(2), Some(3), Some(4)], "{d:?}");
        assert!(BackupConfig::default().check("kbz.toml", None).is_empty());
    }
}
