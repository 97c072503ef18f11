//! Rendering of every file kbz writes for Redis and Sentinel on one host. Pure: the same
//! inputs give the same bytes, which is what the snapshot tests and the 0-change re-run rely on.

use kbz_core::component::ComponentError;
use kbz_core::shell::sha256_hex;
use kbz_core::{template, Context, Host, Role};
use serde_json::json;

use crate::layout::{self, Layout};
use crate::{
    MASTER_NAME, MIN_REPLICAS_MAX_LAG, MIN_REPLICAS_TO_WRITE, REPLICA_PRIORITY, SECRET_REDIS,
    SECRET_SENTINEL,
};

const REDIS_CONF_T: &str = include_str!("../templates/kbz-redis.conf.hbs");
const SENTINEL_CONF_T: &str = include_str!("../templates/kbz-sentinel.conf.hbs");
const ACL_T: &str = include_str!("../templates/users.acl.hbs");
const DROPIN_T: &str = include_str!("../templates/dropin.conf.hbs");
const REDIS_MAIN_T: &str = include_str!("../templates/redis-main.conf.hbs");
const SENTINEL_MAIN_T: &str = include_str!("../templates/sentinel-main.conf.hbs");

/// The first line of the Redis main file kbz writes once; its presence means "ours".
pub const REDIS_MAIN_MARKER: &str = "# kbz-redis: Redis's own file (module 6)";
/// The first line of the Sentinel main file kbz writes once; its presence means "ours".
pub const SENTINEL_MAIN_MARKER: &str = "# kbz-redis: Sentinel's own file (module 6)";

/// Owner of files the daemons read: root writes, the `redis` group reads.
pub const DAEMON_OWNER: &str = "root:redis";
/// Owner of the main files the daemons rewrite themselves.
pub const MAIN_OWNER: &str = "redis:redis";

/// One file with its content, mode and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute path.
    pub path: String,
    /// Content.
    pub content: String,
    /// Permission bits.
    pub mode: u32,
    /// `user:group`.
    pub owner: String,
}

/// A unique Sentinel id for a host: 40 hex characters derived from the cluster name and the
/// hostname, so every host gets its own and a re-render gives the same one.
pub fn sentinel_myid(cluster: &str, hostname: &str) -> String {
    let h = sha256_hex(format!("kbz-sentinel-myid\0{cluster}\0{hostname}").as_bytes());
    h[..40].to_string()
}

/// Majority of `n` Sentinels: no failover can be authorised by a minority.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// Quotes a value for redis.conf / sentinel.conf (double quotes, C-style escapes), so any
/// password survives the config parser intact.
pub fn config_quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                o.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The ACL line giving the default user `password` (stored as its SHA-256 only).
pub fn acl_file(password: &str) -> Result<String, ComponentError> {
    template::render(
        "users.acl.hbs",
        ACL_T,
        &json!({ "hash": sha256_hex(password.as_bytes()) }),
    )
}

/// The command line systemd starts Redis with (the drop-in's `ExecStart`).
pub fn redis_exec_start(layout: &Layout, host: &Host) -> Vec<String> {
    vec![
        layout::REDIS_SERVER_BIN.to_string(),
        layout.path(host, layout::REDIS_MAIN),
        "--include".into(),
        layout.path(host, layout::REDIS_KBZ),
        "--supervised".into(),
        "systemd".into(),
        "--daemonize".into(),
        "no".into(),
    ]
}

/// The command line systemd starts Sentinel with (the drop-in's `ExecStart`).
pub fn sentinel_exec_start(layout: &Layout, host: &Host) -> Vec<String> {
    vec![
        layout::REDIS_SENTINEL_BIN.to_string(),
        layout.path(host, layout::SENTINEL_MAIN),
        "--include".into(),
        layout.path(host, layout::SENTINEL_KBZ),
        "--supervised".into(),
        "systemd".into(),
        "--daemonize".into(),
        "no".into(),
    ]
}

/// kbz's Redis settings for a host (the `--include` file). Holds `masterauth`.
pub fn redis_conf(ctx: &Context, host: &Host, layout: &Layout) -> Result<String, ComponentError> {
    let pw = ctx.secret(SECRET_REDIS)?;
    template::render(
        "kbz-redis.conf.hbs",
        REDIS_CONF_T,
        &json!({
            "hostname": host.hostname,
            "main": layout.path(host, layout::REDIS_MAIN),
            "bind": layout.bind(host),
            "port": layout.redis_port,
            "acl": layout.path(host, layout::REDIS_ACL),
            "masterauth": config_quote(pw.expose()),
            "ip": host.ip.to_string(),
            "replica_priority": REPLICA_PRIORITY,
            "min_replicas_to_write": MIN_REPLICAS_TO_WRITE,
            "min_replicas_max_lag": MIN_REPLICAS_MAX_LAG,
            "dir": layout.path(host, layout::DATA_DIR),
            "logfile": layout.path(host, layout::REDIS_LOG),
            "pidfile": layout.path(host, layout::REDIS_PID),
        }),
    )
}

/// kbz's Sentinel settings for a host (the `--include` file). Holds `sentinel-pass`.
pub fn sentinel_conf(
    ctx: &Context,
    host: &Host,
    layout: &Layout,
) -> Result<String, ComponentError> {
    let pw = ctx.secret(SECRET_SENTINEL)?;
    template::render(
        "kbz-sentinel.conf.hbs",
        SENTINEL_CONF_T,
        &json!({
            "hostname": host.hostname,
            "main": layout.path(host, layout::SENTINEL_MAIN),
            "master_name": MASTER_NAME,
            "port": layout.sentinel_port,
            "bind": layout.bind(host),
            "acl": layout.path(host, layout::SENTINEL_ACL),
            "sentinel_pass": config_quote(pw.expose()),
            "myid": sentinel_myid(&ctx.config.cluster.name, &host.hostname),
            "ip": host.ip.to_string(),
            "dir": layout.path(host, layout::DATA_DIR),
            "logfile": layout.path(host, layout::SENTINEL_LOG),
            "pidfile": layout.path(host, layout::SENTINEL_PID),
        }),
    )
}

/// The systemd drop-in that starts a daemon with kbz's include after its own file.
fn dropin(main: &str, include: &str, argv: &[String]) -> Result<String, ComponentError> {
    template::render(
        "dropin.conf.hbs",
        DROPIN_T,
        &json!({ "main": main, "include": include, "exec_start": argv.join(" ") }),
    )
}

/// The Redis main file kbz writes once (no secrets, no settings: a marker and a comment).
pub fn redis_main_stub(layout: &Layout, host: &Host) -> Result<String, ComponentError> {
    template::render(
        "redis-main.conf.hbs",
        REDIS_MAIN_T,
        &json!({ "marker": REDIS_MAIN_MARKER, "include": layout.path(host, layout::REDIS_KBZ) }),
    )
}

/// The Sentinel main file kbz writes once (no secrets, no settings: a marker and a comment).
pub fn sentinel_main_stub(layout: &Layout, host: &Host) -> Result<String, ComponentError> {
    template::render(
        "sentinel-main.conf.hbs",
        SENTINEL_MAIN_T,
        &json!({
            "marker": SENTINEL_MAIN_MARKER,
            "include": layout.path(host, layout::SENTINEL_KBZ),
        }),
    )
}

/// Every file kbz owns on a Redis host, in the order they are written. The two main files
/// are not here: they are written once by a guarded command (see [`redis_main_stub`]).
pub fn files(
    ctx: &Context,
    host: &Host,
    layout: &Layout,
) -> Result<Vec<RenderedFile>, ComponentError> {
    let redis_pw = ctx.secret(SECRET_REDIS)?;
    let sentinel_pw = ctx.secret(SECRET_SENTINEL)?;
    let f = |p: &str, content: String, mode: u32, owner: &str| RenderedFile {
        path: layout.path(host, p),
        content,
        mode,
        owner: owner.into(),
    };
    let p = |x: &str| layout.path(host, x);
    Ok(vec![
        f(
            layout::REDIS_ACL,
            acl_file(redis_pw.expose())?,
            0o640,
            DAEMON_OWNER,
        ),
        f(
            layout::REDIS_KBZ,
            redis_conf(ctx, host, layout)?,
            0o640,
            DAEMON_OWNER,
        ),
        f(
            layout::REDIS_PASS,
            redis_pw.expose().to_string(),
            0o600,
            "root:root",
        ),
        f(
            layout::SENTINEL_ACL,
            acl_file(sentinel_pw.expose())?,
            0o640,
            DAEMON_OWNER,
        ),
        f(
            layout::SENTINEL_KBZ,
            sentinel_conf(ctx, host, layout)?,
            0o640,
            DAEMON_OWNER,
        ),
        f(
            layout::SENTINEL_PASS,
            sentinel_pw.expose().to_string(),
            0o600,
            "root:root",
        ),
        f(
            layout::REDIS_DROPIN,
            dropin(
                &p(layout::REDIS_MAIN),
                &p(layout::REDIS_KBZ),
                &redis_exec_start(layout, host),
            )?,
            0o644,
            "root:root",
        ),
        f(
            layout::SENTINEL_DROPIN,
            dropin(
                &p(layout::SENTINEL_MAIN),
                &p(layout::SENTINEL_KBZ),
                &sentinel_exec_start(layout, host),
            )?,
            0o644,
            "root:root",
        ),
    ])
}

/// The Redis hosts of the inventory, in inventory order (the first is the bootstrap master).
pub fn redis_hosts(ctx: &Context) -> Vec<&Host> {
    ctx.inventory.with_role(Role::Redis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_awkward_passwords() {
        assert_eq!(config_quote("abc"), "\"abc\"");
        assert_eq!(config_quote("a\"b\\c d"), "\"a\\\"b\\\\c d\"");
        assert_eq!(config_quote("x\ny\u{1}"), "\"x\\ny\\x01\"");
    }

    #[test]
    fn myid_is_40_hex_and_depends_on_cluster_and_host() {
        let a = sentinel_myid("c", "db1");
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, sentinel_myid("c", "db2"));
        assert_ne!(a, sentinel_myid("d", "db1"));
        assert_eq!(a, sentinel_myid("c", "db1"));
    }

    #[test]
    fn quorum_is_a_majority() {
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(5), 3);
        assert_eq!(quorum(1), 1);
    }

    #[test]
    fn acl_stores_only_the_hash() {
        let a = acl_file("hunter2").expect("acl");
        assert!(!a.contains("hunter2"));
        assert!(a.starts_with("user default on "));
        assert!(!a.contains("nopass"));
        assert!(a.contains(&format!("#{}", sha256_hex(b"hunter2"))));
    }
}
