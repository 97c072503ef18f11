//! One binary run's prepared inputs: inventory and config, secrets, the redacting log and
//! masked diagnostics, the notifiers and the [`Context`] the libraries work on.

use kbz_core::plan::Redactor;
use kbz_core::{Component, Context};
use kbz_errors::HasCode;
use kbz_notify::Notifiers;
use std::sync::Arc;

use crate::inputs::{self, Inputs};
use crate::{log, ui, Common, Failure};

/// What a binary needs after its inputs are loaded.
#[derive(Debug)]
pub struct Session {
    /// Inventory, config and state directory.
    pub inputs: Inputs,
    /// The context handed to components.
    pub ctx: Context,
    /// The `[[notify]]` targets (with the cluster name as server).
    pub notifiers: Notifiers,
}

/// How secrets (and, with `[security] tls`, the member certificates) are treated when a
/// session is prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Generate every missing secret and certificate and save them (0600): a real install,
    /// which pushes what it saves.
    Persist,
    /// Save missing secrets, but never write a certificate: one that is missing, or whose
    /// names no longer match the inventory, is made in memory for this run only. For tools
    /// that push no certificate (kbz-backup): a run with an edited inventory must not
    /// replace the certificates the hosts hold.
    SecretsOnly,
    /// Generate missing ones in memory only: a dry-run writes nothing.
    InMemory,
}

/// Loads inputs, secrets (every one the components declare), sets up secret masking for
/// diagnostics and the JSON log `STATE_DIR/logs/<binary>.jsonl`, and builds the notifiers
/// and the context.
pub fn prepare(
    c: &Common,
    binary: &str,
    components: &[Arc<dyn Component>],
    secrets: Secrets,
) -> Result<Session, Failure> {
    prepare_with(c, binary, components, Vec::new(), secrets)
}

/// [`prepare`] with secrets of the binary's own beyond the components' (kbz-backup's
/// encryption key), generated and masked like theirs.
pub fn prepare_with(
    c: &Common,
    binary: &str,
    components: &[Arc<dyn Component>],
    extra_secrets: Vec<String>,
    secrets: Secrets,
) -> Result<Session, Failure> {
    let i = inputs::load(c).map_err(Failure::input)?;
    let names = components
        .iter()
        .flat_map(|c| c.secret_names())
        .chain(extra_secrets)
        .collect::<Vec<_>>();
    let persist = secrets != Secrets::InMemory;
    let certs = secrets == Secrets::Persist;
    let secrets = inputs::secrets(&i, names, persist).map_err(|d| Failure::input(vec![d]))?;
    let pki = inputs::pki(&i, certs).map_err(|d| Failure::input(vec![d]))?;
    let mut redactor = Redactor::from_secrets(&secrets);
    if let Some(p) = &pki {
        redactor.extend(p.patterns());
    }
    ui::mask_secrets(redactor.clone());
    if let Some(dir) = &i.state_dir {
        log::init(dir, binary, c.verbose, redactor);
    }
    let notifiers = Notifiers::new(&i.config.notify, &secrets)
        .map_err(|e| Failure::input(vec![e.to_diagnostic()]))?
        .with_server(&i.config.cluster.name);
    let mut ctx = Context::new(i.inventory.clone(), i.config.clone(), secrets);
    if let Some(p) = pki {
        ctx = ctx.with_pki(p);
    }
    Ok(Session {
        inputs: i,
        ctx,
        notifiers,
    })
}

/// A notification that could not be delivered is a warning, never a failure of the run.
pub fn warn_failed(deliveries: Vec<kbz_core::notifier::Delivery>) {
    for d in deliveries {
        if let Err(reason) = d.result {
            tracing::warn!(target_name = %d.target, %reason, "notification failed");
            crate::errln!("warning: notification `{}` failed: {reason}", d.target);
        }
    }
}
