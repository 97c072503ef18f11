//! kbz-postgres integration tests, one binary: rendered files and Patroni's validator
//! (`render`), engine runs on fake hosts (`engine`) and a real PostgreSQL 15 with kbz's
//! pg_hba and application role (`loopback`); Patroni around an etcd restore is an
//! engine-level fake-host test (`engine::dcs_restore`).

mod engine;
mod loopback;
mod render;
