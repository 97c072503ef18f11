//! Retries with exponential backoff: a bounded number of attempts, each limited by the
//! target's timeout; `Retry-After` waits are capped by that timeout too. An attempt that
//! timed out is not retried, so a hanging endpoint costs the caller one timeout, not several.

use std::future::Future;
use std::time::Duration;

use crate::error::NotifyError;

/// How often and how patiently a delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, at least 1 (default 3).
    pub attempts: u32,
    /// The wait before the second attempt; it doubles before each further one (default
    /// 500 ms), and never exceeds the target's timeout.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `next` (2-based), capped at `cap`.
    pub(crate) fn backoff(&self, next: u32, cap: Duration) -> Duration {
        let factor = 2u32.saturating_pow(next.saturating_sub(2));
        self.base_delay.saturating_mul(factor).min(cap)
    }
}

/// Whether and when a failed attempt may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Permanent: a bad token, a 4xx answer, a rejected address, a timeout.
    Never,
    /// Transient: retry after the policy's backoff.
    Backoff,
    /// The server said when (HTTP 429 `Retry-After`).
    After(Duration),
}

/// One failed attempt.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: NotifyError,
    pub retry: Retry,
}

/// The final failure of a delivery and how many attempts it took.
#[derive(Debug)]
pub(crate) struct GaveUp {
    pub error: NotifyError,
    pub attempts: u32,
}

/// Runs `op` until it succeeds, fails permanently, or the attempts run out.
pub(crate) async fn run<F, Fut>(
    policy: RetryPolicy,
    timeout: Duration,
    target: &str,
    mut op: F,
) -> Result<(), GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let attempts = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        let outcome = match tokio::time::timeout(timeout, op()).await {
            Ok(r) => r,
            Err(_) => Err(Failure {
                error: NotifyError::Timeout(timeout.as_secs()),
                retry: Retry::Never,
            }),
        };
        let failure = match outcome {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        let delay = match failure.retry {
            Retry::Never => None,
            Retry::Backoff => Some(policy.backoff(attempt + 1, timeout)),
            Retry::After(d) => Some(d.min(timeout)),
        };
        match delay {
            Some(delay) if attempt < attempts => {
                tracing::debug!(
                    target_name = target,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    error = %failure.error,
                    "notification attempt failed; retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            _ => {
                return Err(GaveUp {
                    error: failure.error,
                    attempts: attempt,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
        };
        let cap = Duration::from_millis(300);
        assert_eq!(p.backoff(2, cap), Duration::from_millis(100));
        assert_eq!(p.backoff(3, cap), Duration::from_millis(200));
        assert_eq!(p.backoff(4, cap), cap);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_limit() {
        let n = AtomicU32::new(0);
        let r = run(fast(), Duration::from_secs(1), "t", || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(Failure {
                error: NotifyError::Transport("refused".into()),
                retry: Retry::Backoff,
            })
        })
        .await;
        let gave_up = r.expect_err("fails");
        assert_eq!(gave_up.attempts, 3);
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let n = AtomicU32::new(0);
        let r = run(fast(), Duration::from_secs(1), "t", || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(Failure {
                error: NotifyError::Status {
                    status: 404,
                    detail: String::new(),
                },
                retry: Retry::Never,
            })
        })
        .await;
        assert_eq!(r.expect_err("fails").attempts, 1);
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn success_after_a_failure() {
        let n = AtomicU32::new(0);
        let r = run(fast(), Duration::from_secs(1), "t", || async {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(Failure {
                    error: NotifyError::Status {
                        status: 503,
                        detail: String::new(),
                    },
                    retry: Retry::Backoff,
                })
            } else {
                Ok(())
            }
        })
        .await;
        assert!(r.is_ok());
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_attempt_times_out_once() {
        let n = AtomicU32::new(0);
        let r = run(fast(), Duration::from_secs(2), "t", || async {
            n.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(())
        })
        .await;
        let gave_up = r.expect_err("times out");
        assert_eq!(gave_up.error, NotifyError::Timeout(2));
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}
