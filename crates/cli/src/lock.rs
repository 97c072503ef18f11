//! The locks a mutating command of any binary takes: the state directory's `run.lock` on the
//! controller (E066) and, when it changes hosts, `/run/kbz/host.lock` on each of them (E067).
//! kbz-install's runs take both inside the engine; kbz-failover run and kbz-health
//! timer install|remove take them here. Dropping [`Held`] releases everything.

use kbz_core::executor::Executor;
use kbz_core::hostlock::HostLocks;
use kbz_core::runlock::RunLock;
use kbz_errors::HasCode;
use std::path::Path;
use std::sync::Arc;

use crate::{exit, Failure};

/// The locks a command holds until it is dropped.
#[derive(Debug)]
pub struct Held {
    hosts: Option<HostLocks>,
    _run: Option<RunLock>,
}

/// Takes the controller's lock of `state_dir` (none for the bundled example, which has no
/// state directory) for `command`.
pub fn controller(state_dir: Option<&Path>, command: &str) -> Result<Held, Failure> {
    let run = match state_dir {
        Some(dir) => Some(
            RunLock::acquire(dir, command)
                .map_err(|e| Failure::new(e.to_diagnostic(), exit::FAILED))?,
        ),
        None => None,
    };
    Ok(Held {
        hosts: None,
        _run: run,
    })
}

/// Takes the controller's lock, then the host lock on every executor's host (at `path`).
/// Nothing is held when either is refused.
pub fn controller_and_hosts(
    rt: &tokio::runtime::Runtime,
    state_dir: Option<&Path>,
    command: &str,
    execs: Vec<Arc<dyn Executor>>,
    path: &str,
) -> Result<Held, Failure> {
    let mut held = controller(state_dir, command)?;
    let hosts = rt
        .block_on(HostLocks::acquire(execs, path, command))
        .map_err(|e| Failure::new(e.diagnostic(), exit::FAILED))?;
    held.hosts = Some(hosts);
    Ok(held)
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(hosts) = self.hosts.take() else {
            return;
        };
        // Binaries drop their locks outside any async context: a small runtime of our own.
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                for (h, e) in rt.block_on(hosts.release()) {
                    crate::errln!("warning: the host lock on {h} was not released: {e}");
                }
            }
            Err(e) => crate::errln!("warning: host locks not released (no runtime: {e})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Common;
    use kbz_errors::Code;

    #[test]
    fn a_held_controller_lock_refuses_the_timer_commands_with_e066() {
        let state = tempfile::tempdir().expect("tmp");
        let root = tempfile::tempdir().expect("tmp");
        let held = controller(Some(state.path()), "kbz-install install").expect("first");
        let f = controller(Some(state.path()), "kbz-health timer install").expect_err("held");
        assert_eq!(f.diagnostics[0].code, Code::E066);
        assert_eq!(f.exit, exit::FAILED);
        assert!(f.diagnostics[0].message.contains("`kbz-install install`"));
        let c = Common {
            state_dir: Some(state.path().to_path_buf()),
            ..Common::default()
        };
        let code = crate::health::command::timer_remove(&c, root.path());
        assert_eq!(code, exit::FAILED, "timer remove waits for the run");
        drop(held);
        assert_eq!(
            crate::health::command::timer_remove(&c, root.path()),
            exit::OK
        );
        assert!(
            !state.path().join("run.lock").exists(),
            "the timer command released its lock"
        );
    }

    #[test]
    fn failover_locks_every_member_and_a_locked_member_refuses_with_e067() {
        let state = tempfile::tempdir().expect("tmp");
        let rt = crate::runtime().expect("rt");
        let hosts: Vec<Arc<kbz_testkit::FakeHost>> = ["db1", "db2"]
            .iter()
            .map(|n| Arc::new(kbz_testkit::FakeHost::debian(n)))
            .collect();
        let execs = || -> Vec<Arc<dyn Executor>> {
            hosts
                .iter()
                .map(|h| h.clone() as Arc<dyn Executor>)
                .collect()
        };
        let path = kbz_core::shell::HOST_LOCK_PATH;
        let held = controller_and_hosts(&rt, Some(state.path()), "kbz-failover run", execs(), path)
            .expect("free fleet");
        assert!(hosts.iter().all(|h| h.state().files.contains_key(path)));
        let other = tempfile::tempdir().expect("tmp");
        let f = controller_and_hosts(
            &rt,
            Some(other.path()),
            "kbz-install install",
            execs(),
            path,
        )
        .expect_err("members locked");
        assert_eq!(f.diagnostics[0].code, Code::E067);
        assert!(f.diagnostics[0]
            .message
            .contains("db1: another kbz run holds"));
        assert!(f.diagnostics[0].message.contains("`kbz-failover run`"));
        assert!(
            !other.path().join("run.lock").exists(),
            "refused: the controller lock is released"
        );
        drop(held);
        assert!(
            hosts.iter().all(|h| !h.state().files.contains_key(path)),
            "released on drop"
        );
    }
}
