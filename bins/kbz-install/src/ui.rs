//! Terminal and JSON output: diagnostics (framed boxes on a terminal, plain lines otherwise,
//! JSON with --json), progress bars, the end-of-run summary, confirmation, and the JSON log
//! file in the state directory.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kbz_core::engine::{Event, Progress, RunReport};
use kbz_core::plan::Redactor;
use kbz_errors::Diagnostic;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Prints diagnostics to stderr (or stdout as JSON).
pub fn diagnostics(ds: &[Diagnostic], json: bool) {
    // A failed command's stderr is part of its message: mask any secret it might echo.
    let masked = |t: String| match SECRETS.get() {
        Some(r) => r.redact(&t),
        None => t,
    };
    if json {
        let v: Vec<_> = ds.iter().map(Diagnostic::render_json).collect();
        println!("{}", masked(serde_json::json!({ "errors": v }).to_string()));
        return;
    }
    let tty = std::io::stderr().is_terminal();
    for d in ds {
        if tty {
            eprintln!("{}", masked(d.render_box()));
        } else {
            eprintln!("{}", masked(d.render_plain()));
        }
    }
    if ds.len() > 1 {
        eprintln!("{} problems found.", ds.len());
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

impl Bars {
    pub fn new(json: bool) -> Self {
        let multi = (!json && std::io::stderr().is_terminal()).then(MultiProgress::new);
        Bars {
            multi,
            bars: Mutex::new(BTreeMap::new()),
        }
    }

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

/// The end-of-run summary (or the JSON report).
pub fn report(r: &RunReport, elapsed: Duration, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
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
            eprintln!(
                "note: {} host(s) not reached ({}); they are planned as fresh hosts",
                unreached.len(),
                unreached.join(", ")
            );
        }
        print!("{}", r.plan.render());
        return;
    }
    host_table(r);
    let phases: Vec<String> = r
        .timings
        .iter()
        .map(|t| format!("{} {} {:.1}s", t.component, t.phase, t.ms as f64 / 1000.0))
        .collect();
    println!("timings: {}", phases.join(", "));
    println!(
        "{} operation(s) applied on {} host(s) in {:.1}s ({} SSH round trips)",
        r.changed(),
        r.plan.hosts_changed(),
        elapsed.as_secs_f64(),
        r.round_trips
    );
}

/// Per-host changed / ok / failed.
pub fn host_table(r: &RunReport) {
    let w = r.hosts.keys().map(String::len).max().unwrap_or(4).max(4);
    println!("{:<w$}  {:>7}  {:>5}  failed", "host", "changed", "ok");
    for (host, h) in &r.hosts {
        println!(
            "{:<w$}  {:>7}  {:>5}  {}",
            host,
            h.changed,
            h.ok,
            h.failed
                .as_deref()
                .map(|f| f.lines().next().unwrap_or(""))
                .unwrap_or("-")
        );
    }
}

/// Asks a yes/no question on the terminal; anything but y/yes is no.
pub fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// JSON log lines to `STATE_DIR/logs/kbz-install.jsonl` (mode 0600); `-v` adds human lines
/// on stderr. Only kbz's own crates log below WARN (third-party debug output, such as a
/// template engine's render context, can hold secrets), and every line passes through
/// [`Redacting`] so that no secret value reaches a log even if some code logs one.
pub fn init_log(state_dir: &Path, verbose: u8, redactor: Redactor) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let ours = |level: LevelFilter| {
        Targets::new()
            .with_default(LevelFilter::WARN.min(level))
            .with_targets(
                [
                    "kbz_install",
                    "kbz_core",
                    "kbz_exec",
                    "kbz_notify",
                    "kbz_stack",
                ]
                .map(|t| (t, level)),
            )
    };
    let redactor = Arc::new(redactor);
    let dir = state_dir.join("logs");
    let file = std::fs::create_dir_all(&dir).and_then(|_| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(dir.join("kbz-install.jsonl"))
    });
    let file_layer = file.ok().map(|f| {
        let f = Arc::new(Mutex::new(f));
        let r = redactor.clone();
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(move || Redacting {
                inner: f.clone(),
                redactor: r.clone(),
            })
            .with_filter(ours(LevelFilter::DEBUG))
    });
    let level = match verbose {
        0 => LevelFilter::OFF,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let stderr = Arc::new(Mutex::new(std::io::stderr()));
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(move || Redacting {
            inner: stderr.clone(),
            redactor: redactor.clone(),
        })
        .with_filter(ours(level));
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .try_init();
}

/// A log writer that masks secret values. tracing's fmt layer formats each event into one
/// buffer and writes it with a single `write_all`, so a secret is never split across writes.
struct Redacting<W> {
    inner: Arc<Mutex<W>>,
    redactor: Arc<Redactor>,
}

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = self.redactor.redact(&String::from_utf8_lossy(buf));
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        w.write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}
