//! Shared fixtures: the example inventory and config with placeholder secrets, and the
//! redis-cli answers a FakeHost gives for a fresh, a converged and a failed-over cluster.

use kbz_core::{Component, Context, Host, Role};
use kbz_redis::Redis;

/// The example fleet (`examples/servers.tsv`, `examples/kbz.toml`), placeholder secrets.
pub fn example_ctx() -> Context {
    kbz_testkit::example_context(Redis.secret_names())
}

/// The Redis hosts in inventory order.
pub fn redis_hosts(ctx: &Context) -> Vec<Host> {
    ctx.inventory
        .with_role(Role::Redis)
        .into_iter()
        .cloned()
        .collect()
}

/// `INFO replication` of a master with these online replicas.
pub fn master_info(replicas: &[&str]) -> String {
    let mut s = format!(
        "# Replication\r\nrole:master\r\nconnected_slaves:{}\r\n",
        replicas.len()
    );
    for (i, r) in replicas.iter().enumerate() {
        s.push_str(&format!(
            "slave{i}:ip={r},port=6379,state=online,offset=9000,lag=0\r\n"
        ));
    }
    s.push_str("master_failover_state:no-failover\r\nmaster_repl_offset:9000\r\n");
    s
}

/// `INFO replication` of a replica of `master` with the link up.
pub fn replica_info(master: &str) -> String {
    format!(
        "# Replication\r\nrole:slave\r\nmaster_host:{master}\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:0\r\nslave_priority:100\r\nslave_read_only:1\r\nconnected_slaves:0\r\n"
    )
}

/// `SENTINEL MASTER kbz` of a Sentinel following `master` with kbz's parameters.
pub fn sentinel_master(master: &str, epoch: u32) -> String {
    format!(
        "name\nkbz\nip\n{master}\nport\n6379\nrunid\nabc\nflags\nmaster\nlink-pending-commands\n0\nlink-refcount\n1\nlast-ping-sent\n0\nlast-ok-ping-reply\n200\nlast-ping-reply\n200\ndown-after-milliseconds\n5000\ninfo-refresh\n1000\nrole-reported\nmaster\nrole-reported-time\n90000\nconfig-epoch\n{epoch}\nnum-slaves\n2\nnum-other-sentinels\n2\nquorum\n2\nfailover-timeout\n10000\nparallel-syncs\n1\n"
    )
}

/// The gather script's output.
pub fn gather(info: &str, sentinel: &str, ckquorum: &str) -> String {
    format!(
        "@@ redis\n{info}@@ sentinel-master\n{sentinel}@@ sentinel-ckquorum\n{ckquorum}\n@@ end\n"
    )
}

/// A node of a fresh cluster: a stand-alone master, a Sentinel monitoring nothing.
pub fn fresh_gather() -> String {
    gather(
        &master_info(&[]),
        "ERR No such master with that name\n",
        "ERR No such master with that name",
    )
}

/// CKQUORUM's success answer.
pub const CKQUORUM_OK: &str =
    "OK 3 usable Sentinels. Quorum and failover authorization can be reached";
