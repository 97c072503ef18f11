//! kbz-stack: the list of every component of the stack, in module order. Binaries and
//! xtask take the stack from here so they can never disagree about what "everything" is.

use kbz_core::Component;
use std::sync::Arc;

/// Every component, in module order.
pub fn components() -> Vec<Arc<dyn Component>> {
    vec![
        Arc::new(kbz_base::Base),
        Arc::new(kbz_keepalived::Keepalived),
        Arc::new(kbz_haproxy::Haproxy),
        Arc::new(kbz_etcd::Etcd),
        Arc::new(kbz_postgres::Postgres),
        Arc::new(kbz_redis::Redis),
        Arc::new(kbz_rabbitmq::Rabbitmq),
        Arc::new(kbz_mariadb::Mariadb),
        Arc::new(kbz_kubernetes::Kubernetes),
    ]
}

/// Every component's backups ([`kbz_core::backup::Backup`]), in module order: what
/// kbz-backup runs, verifies, restores and drills. etcd and Redis store artifacts;
/// PostgreSQL's pgBackRest keeps its own repository.
pub fn backups() -> Vec<Arc<dyn kbz_core::backup::Backup>> {
    vec![
        Arc::new(kbz_etcd::backup::EtcdBackup::default()),
        Arc::new(kbz_redis::backup::RedisBackup::default()),
    ]
}

/// The components held still around another one's restore
/// ([`kbz_core::backup::RestoreHook`]): Patroni around etcd.
pub fn restore_hooks() -> Vec<Arc<dyn kbz_core::backup::RestoreHook>> {
    vec![Arc::new(kbz_postgres::dcs_restore::PatroniAroundEtcd)]
}
