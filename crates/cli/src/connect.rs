//! The connector a run uses: SSH to the inventory's hosts, or the offline connector that
//! reaches none (the bundled example, `--offline`), so every host is planned as fresh.

use kbz_core::executor::{Connector, ExecError, Executor};
use kbz_core::Host;
use kbz_errors::HasCode;
use std::sync::Arc;

use crate::inputs::Inputs;
use crate::{Common, Failure};

/// Plans every host as fresh without connecting (the bundled example, `--offline`).
#[derive(Debug)]
pub struct Offline;

#[async_trait::async_trait]
impl Connector for Offline {
    async fn connect(&self, host: &Host) -> Result<Arc<dyn Executor>, ExecError> {
        Err(ExecError::Unreachable {
            host: host.ip.to_string(),
            port: host.ssh_port,
            reason: "offline plan: not contacted".into(),
        })
    }
}

/// The SSH connector for the inventory's hosts (ssh settings from kbz.toml), or [`Offline`]
/// for the bundled example or when `offline` is set.
pub fn connector(i: &Inputs, c: &Common, offline: bool) -> Result<Arc<dyn Connector>, Failure> {
    if i.bundled || offline {
        return Ok(Arc::new(Offline));
    }
    Ok(Arc::new(kbz_exec::ssh::SshConnector::new(ssh_options(
        i, c,
    )?)))
}

/// The SSH options of every connection to the hosts (`[ssh]` and `[timeouts]` of kbz.toml,
/// `--accept-new-host-keys`, new keys shown as they are recorded); also what kbz-failover
/// opens its bastion tunnels with.
pub fn ssh_options(i: &Inputs, c: &Common) -> Result<kbz_exec::ssh::SshOptions, Failure> {
    let mut opts = kbz_exec::ssh::SshOptions::from_config(&i.config)
        .map_err(|e| Failure::input(vec![e.to_diagnostic()]))?;
    opts.accept_new_host_keys = c.accept_new_host_keys;
    // Every key recorded is shown, so the operator can compare it with the host's own
    // (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host).
    opts.on_new_host_key = Some(kbz_exec::ssh::KeyRecorded(Arc::new(|k| {
        crate::errln!(
            "kbz: recorded the new host key of {}: {} {} (compare with `ssh-keygen -lf` on the host)",
            k.host,
            k.key_type,
            k.fingerprint
        );
    })));
    Ok(opts)
}
