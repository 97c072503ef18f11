//! The stages of a run that span every component: the batched probe ([`ProbeCache`]: every
//! selected component's resources on a host observed in one round trip, each component's
//! share reused while nothing changed on the host, so a converged re-run probes a host once)
//! and the plan of the packages-first phase ([`packages_first`]: every component's missing
//! packages, with the resources each component declares before them, installed on all hosts
//! at once in one `apt-get install` per host, before any component's rolling steps).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::executor::Executor;
use crate::plan::{diff, Change, Redactor};
use crate::resource::{Observed, Op, Resource};

/// The component name the packages-first phase journals and reports its install under.
pub const PACKAGES: &str = "packages";

type HostEntries = BTreeMap<String, (Vec<String>, Vec<Observed>)>;

/// One host's answer to the batched probe, per component.
#[derive(Debug)]
pub struct HostObservations(HostEntries);

/// Observations of the batched probe: per host, per component, the resource ids probed and
/// what was observed. An entry is used once; a host where something changed is forgotten.
#[derive(Debug, Default)]
pub struct ProbeCache {
    hosts: Mutex<BTreeMap<String, HostEntries>>,
}

impl ProbeCache {
    /// Probes every component's resources of one host in one round trip: the answer to
    /// [`ProbeCache::insert`]. A failed probe gives nothing: each component then probes on
    /// its own and reports its own error.
    pub async fn observe(
        exec: &dyn Executor,
        sets: Vec<(String, Vec<Resource>)>,
    ) -> Option<HostObservations> {
        let all: Vec<Resource> = sets.iter().flat_map(|(_, r)| r.iter().cloned()).collect();
        if all.is_empty() {
            return None;
        }
        let observed = exec.probe(&all).await.ok()?;
        if observed.len() != all.len() {
            return None;
        }
        let mut it = observed.into_iter();
        let mut entries = BTreeMap::new();
        for (component, resources) in sets {
            let obs: Vec<Observed> = it.by_ref().take(resources.len()).collect();
            let ids = resources.iter().map(Resource::id).collect();
            entries.insert(component, (ids, obs));
        }
        Some(HostObservations(entries))
    }

    /// Remembers what [`ProbeCache::observe`] saw on `host`.
    pub fn insert(&self, host: &str, observed: HostObservations) {
        lock(&self.hosts).insert(host.into(), observed.0);
    }

    /// The observations of `component`'s `desired` on `host` if they are still valid (the
    /// same resources, nothing changed on the host since); the entry is used up.
    pub fn take(&self, host: &str, component: &str, desired: &[Resource]) -> Option<Vec<Observed>> {
        let (ids, obs) = lock(&self.hosts).get_mut(host)?.remove(component)?;
        matches(&ids, desired).then_some(obs)
    }

    /// Like [`ProbeCache::take`], keeping the entry.
    pub fn peek(&self, host: &str, component: &str, desired: &[Resource]) -> Option<Vec<Observed>> {
        let hosts = lock(&self.hosts);
        let (ids, obs) = hosts.get(host)?.get(component)?;
        matches(ids, desired).then(|| obs.clone())
    }

    /// Forgets a host's observations: something changed on it.
    pub fn invalidate(&self, host: &str) {
        lock(&self.hosts).remove(host);
    }

    /// Forgets every host's observations (a cluster step acted on the cluster).
    pub fn invalidate_all(&self) {
        lock(&self.hosts).clear();
    }
}

fn matches(ids: &[String], desired: &[Resource]) -> bool {
    ids.len() == desired.len() && ids.iter().zip(desired).all(|(i, r)| *i == r.id())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the packages-first phase does on one host.
#[derive(Debug, Default)]
pub struct PackagesPlan {
    /// The components with a package to install here (module order).
    pub components: Vec<String>,
    /// Per component (module order): the changes to what it declares before its last
    /// package (files, directories, guarded commands, kernel settings; never services),
    /// for the components that have a package to install here.
    pub before: Vec<(String, Vec<Change>)>,
    /// The one install of every missing package of every component.
    pub install: Option<Change>,
    /// Per component, the files the phase changes: its own plan later restarts the services
    /// whose `restart_on` names one of them.
    pub changed_files: BTreeMap<String, BTreeSet<String>>,
    /// Per component, its services (resource id and observation) that did not exist before
    /// the phase: its own plan diffs them as absent, so their undo stops and disables them
    /// before the rollback purges the package that brought them (a restart's undo would
    /// restart a unit that is gone).
    pub absent_services: BTreeMap<String, Vec<(String, Observed)>>,
}

impl PackagesPlan {
    /// Every change in the order the phase applies them.
    pub fn changes(&self) -> Vec<Change> {
        self.before
            .iter()
            .flat_map(|(_, c)| c.iter().cloned())
            .chain(self.install.clone())
            .collect()
    }
}

/// Plans the packages-first phase of one host from each component's desired resources and
/// what the probe observed (module order). A component takes part only when one of its
/// packages is missing; then what it declares before its last package comes first (a
/// component puts there what its package's postinst must find, such as a drop-in or the
/// apt source), and all missing packages are installed together. Packages to remove stay
/// in the components' own plans.
pub fn packages_first(
    sets: &[(String, Vec<Resource>, Vec<Observed>)],
    redactor: &Arc<Redactor>,
) -> PackagesPlan {
    let mut plan = PackagesPlan::default();
    let mut names: Vec<String> = Vec::new();
    for (component, desired, observed) in sets {
        let absent: Vec<(String, Observed)> = desired
            .iter()
            .zip(observed)
            .filter(|(_, o)| matches!(o, Observed::Service { exists: false, .. }))
            .map(|(r, o)| (r.id(), o.clone()))
            .collect();
        if !absent.is_empty() {
            plan.absent_services.insert(component.clone(), absent);
        }
        let Some(last) = desired
            .iter()
            .rposition(|r| matches!(r, Resource::Package { present, .. } if *present))
        else {
            continue;
        };
        let missing: Vec<&String> = desired[..=last]
            .iter()
            .zip(observed)
            .filter_map(|(r, o)| match (r, o) {
                (Resource::Package { name, present }, Observed::Package { installed })
                    if *present && !*installed =>
                {
                    Some(name)
                }
                _ => None,
            })
            .collect();
        if missing.is_empty() {
            continue;
        }
        plan.components.push(component.clone());
        let (pre, obs): (Vec<Resource>, Vec<Observed>) = desired[..=last]
            .iter()
            .zip(observed)
            .filter(|(r, _)| !matches!(r, Resource::Package { .. } | Resource::Service { .. }))
            .map(|(r, o)| (r.clone(), o.clone()))
            .unzip();
        let changes = diff(&pre, &obs, redactor);
        let files: BTreeSet<String> = changes
            .iter()
            .filter_map(|c| match &c.op {
                Op::WriteFile { path, .. }
                | Op::RemoveFile { path }
                | Op::PutArtifact { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        if !files.is_empty() {
            plan.changed_files.insert(component.clone(), files);
        }
        if !changes.is_empty() {
            plan.before.push((component.clone(), changes));
        }
        for m in missing {
            if !names.contains(m) {
                names.push(m.clone());
            }
        }
    }
    if !names.is_empty() {
        plan.install = Some(Change {
            resource: format!("packages:{}", names.join(",")),
            op: Op::InstallPackages {
                names: names.clone(),
            },
            undo: vec![Op::RemovePackages { names }],
            diff: None,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red() -> Arc<Redactor> {
        Arc::new(Redactor::from_secrets(&crate::secret::Secrets::in_memory()))
    }

    fn absent() -> Observed {
        Observed::File {
            content: None,
            mode: None,
            owner: None,
        }
    }

    #[test]
    fn every_missing_package_is_one_install_after_what_comes_before_it() {
        let etcd = vec![
            Resource::file("/etc/default/etcd", "x", 0o644),
            Resource::package("etcd-server"),
            Resource::file("/etc/etcd/late.conf", "y", 0o644),
            Resource::service("etcd", &["/etc/default/etcd"]),
        ];
        let etcd_obs = vec![
            absent(),
            Observed::Package { installed: false },
            absent(),
            Observed::Service {
                exists: false,
                enabled: false,
                active: false,
            },
        ];
        let redis = vec![Resource::package("redis-server"), Resource::package("jq")];
        let redis_obs = vec![
            Observed::Package { installed: false },
            Observed::Package { installed: true },
        ];
        let done = vec![Resource::package("chrony")];
        let done_obs = vec![Observed::Package { installed: true }];
        let p = packages_first(
            &[
                ("base".into(), done, done_obs),
                ("etcd".into(), etcd, etcd_obs),
                ("redis".into(), redis, redis_obs),
            ],
            &red(),
        );
        assert_eq!(p.before.len(), 1, "{p:?}");
        assert_eq!(p.before[0].0, "etcd");
        let ops: Vec<String> = p.changes().iter().map(|c| c.op.describe()).collect();
        assert_eq!(
            ops,
            [
                "write /etc/default/etcd (1 bytes, mode 0644, owner root:root)",
                "install packages etcd-server redis-server"
            ]
        );
        assert_eq!(
            p.install.as_ref().map(|c| c.undo.clone()),
            Some(vec![Op::RemovePackages {
                names: vec!["etcd-server".into(), "redis-server".into()]
            }])
        );
        assert!(p.changed_files["etcd"].contains("/etc/default/etcd"));
    }

    #[test]
    fn a_host_with_every_package_plans_nothing() {
        let p = packages_first(
            &[(
                "base".into(),
                vec![
                    Resource::file("/etc/x", "x", 0o644),
                    Resource::package("chrony"),
                ],
                vec![absent(), Observed::Package { installed: true }],
            )],
            &red(),
        );
        assert!(p.changes().is_empty(), "{p:?}");
    }
}
