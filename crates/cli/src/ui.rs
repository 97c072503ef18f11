//! Terminal and JSON output: diagnostics (framed boxes on a terminal, plain lines otherwise,
//! JSON with --json), progress bars, the end-of-run summary, aligned tables, confirmation.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kbz_core::engine::{Event, Progress, RunReport};
use kbz_core::plan::Redactor;
use kbz_errors::Diagnostic;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `text` with every secret of the run (and every value derived from one) masked.
pub fn mask(text: &str) -> String {
    match SECRETS.get() {
        Some(r) => r.redact(text),
        None => text.to_string(),
    }
}

/// Writes `text` to stdout, masked. Every byte a kbz binary prints goes through here or
/// [`err`] (the `outln!` / `errln!` macros); a tidy test forbids `println!` and friends.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(mask(text).as_bytes());
    let _ = o.flush();
}

/// Writes `text` to stderr, masked.
pub fn err(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(mask(text).as_bytes());
    let _ = e.flush();
}

/// `println!` to stdout through [`ui::out`](crate::ui::out): secrets masked.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => { $crate::ui::out(&format!("{}\n", format_args!($($t)*))) };
}

/// `print!` to stdout through [`ui::out`](crate::ui::out): secrets masked.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::ui::out(&format!($($t)*)) };
}

/// `eprintln!` to stderr through [`ui::err`](crate::ui::err): secrets masked.
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => { $crate::ui::err(&format!("{}\n", format_args!($($t)*))) };
}

/// `eprint!` to stderr through [`ui::err`](crate::ui::err): secrets masked.
#[macro_export]
macro_rules! err {
    ($($t:tt)*) => { $crate::ui::err(&format!($($t)*)) };
}

/// Prints diagnostics to stderr (or stdout as JSON).
pub fn diagnostics(ds: &[Diagnostic], json: bool) {
    // A failed command's stderr is part of its message: mask any secret it might echo.
    let masked = |t: String| mask(&t);
    // Thousands of the same problem are summarized after the first few of each code.
    let total = ds.len();
    let ds = &kbz_errors::summarize(ds.to_vec(), kbz_errors::MAX_PER_CODE)[..];
    if json {
        let v: Vec<_> = ds.iter().map(Diagnostic::render_json).collect();
        crate::outln!("{}", masked(serde_json::json!({ "errors": v }).to_string()));
        return;
    }
    let tty = std::io::stderr().is_terminal();
    for d in ds {
        if tty {
            crate::errln!("{}", masked(d.render_box()));
        } else {
            crate::errln!("{}", masked(d.render_plain()));
        }
    }
    if total > 1 {
        crate::errln!("{total} problems found.");
    }
}

/// The run's secret values, set once they are loaded; diagnostics pass through it.
static SECRETS: std::sync::OnceLock<Arc<Redactor>> = std::sync::OnceLock::new();

/// Masks these secret values in every diagnostic printed from now on.
pub fn mask_secrets(redactor: Redactor) {
    let _ = SECRETS.set(Arc::new(redactor));
}

/// Progress bars, one per component, counting hosts done.
pub struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl std::fmt::Debug for Bars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bars")
            .field("terminal", &self.multi.is_some())
            .finish()
    }
}

impl Bars {
    /// Bars on a terminal's stderr; none with --json or off a terminal.
    pub fn new(json: bool) -> Self {
        let multi = (!json && std::io::stderr().is_terminal()).then(MultiProgress::new);
        Bars {
            multi,
            bars: Mutex::new(BTreeMap::new()),
        }
    }

    /// Removes every bar (before printing a summary).
    pub fn clear(&self) {
        if let Ok(mut b) = self.bars.lock() {
            for bar in b.values() {
                bar.finish_and_clear();
            }
            b.clear();
        }
    }
}

impl Progress for Bars {
    fn event(&self, e: &Event) {
        tracing::info!(event = %serde_json::to_string(e).unwrap_or_default(), "progress");
        let Some(multi) = &self.multi else { return };
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match e {
            Event::ComponentStart {
                component,
                module,
                hosts,
            } => {
                let bar = multi.add(ProgressBar::new(*hosts as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>18} [{bar:30}] {pos}/{len} hosts {elapsed} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_prefix(format!("{module:>2} {component}"));
                bar.enable_steady_tick(Duration::from_millis(200));
                bars.insert(component.clone(), bar);
            }
            Event::HostDone { component, .. } => {
                if let Some(b) = bars.get(component) {
                    b.inc(1);
                }
            }
            Event::HostFailed {
                component, host, ..
            } => {
                if let Some(b) = bars.get(component) {
                    b.inc(1);
                    b.set_message(format!("{host} failed"));
                }
            }
            Event::Unreachable { .. } | Event::RollbackStart { .. } => {}
        }
    }
}

/// A bar (or a spinner when `len` is 0) on stderr for a long operation; hidden with --json
/// or when stderr is not a terminal, so logs and pipes never get its escape codes.
pub fn progress(len: u64, message: &str, json: bool) -> ProgressBar {
    progress_on(std::io::stderr().is_terminal(), len, message, json)
}

fn progress_on(terminal: bool, len: u64, message: &str, json: bool) -> ProgressBar {
    if json || !terminal {
        return ProgressBar::hidden();
    }
    let (bar, template) = if len == 0 {
        (ProgressBar::new_spinner(), "{spinner} {msg} {elapsed}")
    } else {
        (
            ProgressBar::new(len),
            "[{bar:30}] {pos}/{len} {msg} {elapsed}",
        )
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(mask(message));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The end-of-run summary (or the JSON report).
pub fn report(r: &RunReport, elapsed: Duration, json: bool) {
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    if r.dry_run {
        let unreached: Vec<&str> = r
            .hosts
            .iter()
            .filter(|(_, h)| h.unreachable)
            .map(|(n, _)| n.as_str())
            .collect();
        if !unreached.is_empty() {
            crate::errln!(
                "note: {} host(s) not reached ({}); they are planned as fresh hosts",
                unreached.len(),
                unreached.join(", ")
            );
        }
        crate::out!("{}", r.plan.render());
        return;
    }
    host_table(r);
    let phases: Vec<String> = r
        .timings
        .iter()
        .map(|t| format!("{} {} {:.1}s", t.component, t.phase, t.ms as f64 / 1000.0))
        .collect();
    crate::outln!("timings: {}", phases.join(", "));
    let totals: Vec<String> = r
        .summary
        .phases
        .iter()
        .map(|p| format!("{} {:.1}s", p.phase, p.ms as f64 / 1000.0))
        .collect();
    crate::outln!("phases: {}", totals.join(", "));
    for c in &r.cluster_changes {
        crate::outln!("cluster: {c}");
    }
    crate::outln!(
        "{} operation(s) applied on {} host(s), {} cluster change(s), in {:.1}s ({} SSH round trips)",
        r.changed(),
        r.plan.hosts_changed(),
        r.cluster_changed(),
        elapsed.as_secs_f64(),
        r.round_trips
    );
}

/// Per-host changed / ok / failed.
pub fn host_table(r: &RunReport) {
    let w = r.hosts.keys().map(String::len).max().unwrap_or(4).max(4);
    crate::outln!(
        "{:<w$}  {:>7}  {:>5}  {:>7}  failed",
        "host",
        "changed",
        "ok",
        "cluster"
    );
    for (host, h) in &r.hosts {
        crate::outln!(
            "{:<w$}  {:>7}  {:>5}  {:>7}  {}",
            host,
            h.changed,
            h.ok,
            h.cluster_changed,
            h.failed
                .as_deref()
                .map(|f| f.lines().next().unwrap_or(""))
                .unwrap_or("-")
        );
    }
}

/// Asks a yes/no question on the terminal; anything but y/yes is no.
pub fn confirm(question: &str) -> bool {
    crate::err!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Prints rows under a header as aligned columns (the last column is not padded).
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    crate::out!("{}", render_table(header, rows));
}

/// Renders rows under a header as aligned columns (the last column is not padded).
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).take(n).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_is_hidden_off_a_terminal_and_with_json() {
        assert!(super::progress_on(false, 3, "runs", false).is_hidden());
        assert!(super::progress_on(true, 3, "runs", true).is_hidden());
        assert!(super::progress_on(false, 0, "checking", false).is_hidden());
    }

    #[test]
    fn tables_align_columns() {
        let t = super::render_table(
            &["host", "check", "detail"],
            &[
                vec!["db1".into(), "etcd health".into(), "ok".into()],
                vec!["lb10".into(), "vip".into(), "held".into()],
            ],
        );
        assert_eq!(
            t,
            "host  check        detail\ndb1   etcd health  ok\nlb10  vip          held\n"
        );
    }
}
