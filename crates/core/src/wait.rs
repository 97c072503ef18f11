//! Readiness waits: poll a check on a host until it passes or the deadline passes. Never a
//! fixed sleep: the interval only spaces the polls.

use std::time::{Duration, Instant};

use crate::error::ComponentError;
use crate::executor::{Cmd, Executor, Output};

/// Runs `script` on `exec` until it exits 0, at most `timeout`, polling every `interval`.
/// Returns the passing output; on timeout, `ComponentError::Readiness` naming `what` and the
/// last output seen.
pub async fn until_ok(
    exec: &dyn Executor,
    script: &str,
    what: &str,
    timeout: Duration,
    interval: Duration,
) -> Result<Output, ComponentError> {
    let start = Instant::now();
    let last: String = loop {
        let out = exec
            .run(&Cmd::new(script).timeout(interval.max(Duration::from_secs(10))))
            .await?;
        if out.success() {
            return Ok(out);
        }
        if start.elapsed() + interval > timeout {
            break format!("{}{}", out.stdout_str(), out.stderr_str())
                .trim()
                .chars()
                .take(300)
                .collect();
        }
        tokio::time::sleep(interval).await;
    };
    Err(ComponentError::Readiness {
        what: if last.is_empty() {
            format!("{what} on {}", exec.name())
        } else {
            format!("{what} on {} (last: {last})", exec.name())
        },
        secs: timeout.as_secs(),
    })
}
