//! `Context`: everything a component may read while declaring resources: the inventory, the
//! config and the run's secrets. Immutable during a run.

use std::sync::Arc;

use crate::component::ComponentError;
use crate::config::Config;
use crate::inventory::Inventory;
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
}

impl Context {
    /// Builds a context.
    pub fn new(inventory: Inventory, config: Config, secrets: Secrets) -> Self {
        Context {
            inventory: Arc::new(inventory),
            config: Arc::new(config),
            secrets: Arc::new(secrets),
        }
    }

    /// A secret the component declared in [`crate::Component::secret_names`].
    pub fn secret(&self, name: &str) -> Result<Secret, ComponentError> {
        self.secrets
            .get(name)
            .cloned()
            .ok_or_else(|| ComponentError::MissingSecret(name.to_string()))
    }
}
