//! The JSON log file of a run, `STATE_DIR/logs/<binary>.jsonl` (mode 0600), and `-v`
//! human lines on stderr; every line passes through the secret redactor.

use kbz_core::plan::Redactor;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// JSON log lines to `STATE_DIR/logs/<binary>.jsonl` (mode 0600); `-v` adds human lines
/// on stderr. Only kbz's own crates log below WARN (third-party debug output, such as a
/// template engine's render context, can hold secrets), and every line passes through
/// a redacting writer so that no secret value reaches a log even if some code logs one.
pub fn init(state_dir: &Path, binary: &str, verbose: u8, redactor: Redactor) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let bin_target = binary.replace('-', "_");
    let ours = |level: LevelFilter| {
        Targets::new()
            .with_default(LevelFilter::WARN.min(level))
            .with_targets(
                [
                    bin_target.as_str(),
                    "kbz_cli",
                    "kbz_core",
                    "kbz_exec",
                    "kbz_notify",
                    "kbz_stack",
                ]
                .map(|t| (t.to_string(), level)),
            )
            .with_targets(COMPONENT_TARGETS.iter().map(|t| (t.to_string(), level)))
    };
    let redactor = Arc::new(redactor);
    let dir = state_dir.join("logs");
    let file = std::fs::create_dir_all(&dir).and_then(|_| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(dir.join(format!("{binary}.jsonl")))
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

/// The components' log targets (their own events are kbz's, not third-party output).
const COMPONENT_TARGETS: &[&str] = &[
    "kbz_base",
    "kbz_keepalived",
    "kbz_haproxy",
    "kbz_etcd",
    "kbz_postgres",
    "kbz_redis",
];

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
