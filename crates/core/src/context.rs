//! `Context`: everything a component may read while declaring resources: the inventory, the
//! config and the run's secrets. Immutable during a run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::command::Facts;
use crate::config::Config;
use crate::error::ComponentError;
use crate::inventory::Host;
use crate::inventory::Inventory;
use crate::pki::{MemberCert, Pki};
use crate::secret::{Secret, Secrets};

/// Read-only inputs of a run.
#[derive(Debug, Clone)]
pub struct Context {
    /// Hosts.
    pub inventory: Arc<Inventory>,
    /// Settings.
    pub config: Arc<Config>,
    /// Secrets, already generated for every component of the run.
    pub secrets: Arc<Secrets>,
    /// Facts gathered from each reachable host at the start of a run (by hostname).
    pub facts: Arc<std::collections::BTreeMap<String, Facts>>,
    /// The cluster CA and member certificates, when `[security] tls` is on.
    pub pki: Option<Arc<Pki>>,
    /// Values computed once per run and shared by every host (see [`Context::shared`]).
    memo: Arc<Mutex<HashMap<&'static str, Arc<str>>>>,
}

impl Context {
    /// Builds a context.
    pub fn new(inventory: Inventory, config: Config, secrets: Secrets) -> Self {
        Context {
            inventory: Arc::new(inventory),
            config: Arc::new(config),
            secrets: Arc::new(secrets),
            memo: Arc::default(),
            facts: Arc::default(),
            pki: None,
        }
    }

    /// The same context with the cluster's certificates (kbz-cli makes them when
    /// `[security] tls` is on).
    pub fn with_pki(mut self, pki: Pki) -> Self {
        self.pki = Some(Arc::new(pki));
        self
    }

    /// The certificates to use: `None` while `[security] tls` is off; an error when it is on
    /// and the run made none.
    pub fn tls(&self) -> Result<Option<&Pki>, ComponentError> {
        if !self.config.security.tls {
            return Ok(None);
        }
        match &self.pki {
            Some(p) => Ok(Some(p)),
            None => Err(ComponentError::MissingSecret(
                "tls certificates ([security] tls = true, but no CA was loaded)".into(),
            )),
        }
    }

    /// The CA and `hostname`'s certificate: `None` while `[security] tls` is off; an error
    /// when it is on and the run made no certificate for that member.
    pub fn tls_member(
        &self,
        hostname: &str,
    ) -> Result<Option<(&Pki, &MemberCert)>, ComponentError> {
        let Some(pki) = self.tls()? else {
            return Ok(None);
        };
        let member = pki.member(hostname).ok_or_else(|| {
            ComponentError::MissingSecret(format!("the TLS certificate of {hostname}"))
        })?;
        Ok(Some((pki, member)))
    }

    /// The same context with facts (the engine calls this after connecting).
    pub fn with_facts(&self, facts: std::collections::BTreeMap<String, Facts>) -> Self {
        Context {
            facts: Arc::new(facts),
            memo: Arc::default(),
            ..self.clone()
        }
    }

    /// The network interface carrying the host's inventory address: the `iface` label if set,
    /// else what the host reported, else `eth0` (hosts planned without contact).
    pub fn interface(&self, host: &Host) -> String {
        if let Some(i) = host.labels.get("iface") {
            return i.clone();
        }
        self.facts
            .get(&host.hostname)
            .and_then(|f| f.interface_of(host.ip))
            .unwrap_or("eth0")
            .to_string()
    }

    /// Text that is the same for every host (a cluster-wide /etc/hosts, a member list),
    /// computed on first use and shared, so planning a large fleet renders it once.
    pub fn shared(&self, key: &'static str, compute: impl FnOnce() -> String) -> Arc<str> {
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        memo.entry(key)
            .or_insert_with(|| Arc::from(compute()))
            .clone()
    }

    /// A secret the component declared in [`crate::Component::secret_names`].
    pub fn secret(&self, name: &str) -> Result<Secret, ComponentError> {
        self.secrets
            .get(name)
            .cloned()
            .ok_or_else(|| ComponentError::MissingSecret(name.to_string()))
    }
}
