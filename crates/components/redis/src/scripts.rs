//! The shell scripts kbz runs on Redis hosts. Each starts with a `# kbz-redis <name>` line
//! (the test doubles match on it). Passwords never appear in a script or on a command line:
//! a script exports `REDISCLI_AUTH` from a root-only file (`cat` and `export` keep it out of
//! every process's argv), and `SENTINEL SET ... auth-pass` reads the value from stdin (`-x`).
//! `redis-cli -e` makes error replies fail the command.

use kbz_core::shell::quote;
use kbz_core::Host;
use std::net::IpAddr;

use crate::layout::{self, Layout};
use crate::observe::SentinelParams;
use crate::MASTER_NAME;

/// Marker of the one-round-trip state query.
pub const GATHER: &str = "# kbz-redis gather";
/// Marker of the wait until both local daemons answer PING.
pub const PING: &str = "# kbz-redis ping";
/// Marker of the guarded REPLICAOF.
pub const REPLICAOF: &str = "# kbz-redis replicaof";
/// Marker of SENTINEL MONITOR on a fresh Sentinel.
pub const MONITOR: &str = "# kbz-redis sentinel-monitor";
/// Marker of SENTINEL SET on a Sentinel whose parameters drifted.
pub const SENTINEL_SET: &str = "# kbz-redis sentinel-set";
/// Marker of the wait until every replica is linked to the master.
pub const WAIT_REPLICATION: &str = "# kbz-redis wait-replication";
/// Marker of the wait until every Sentinel agrees and CKQUORUM passes.
pub const WAIT_SENTINELS: &str = "# kbz-redis wait-sentinels";

/// Text every mutating script carries, so tests can assert none ran.
pub const MUTATING: &[&str] = &[REPLICAOF, MONITOR, SENTINEL_SET];

/// `redis-cli` against the local Redis with the Redis password loaded.
fn redis_auth(layout: &Layout, host: &Host) -> String {
    format!(
        "REDISCLI_AUTH=\"$(cat {})\"; export REDISCLI_AUTH\n",
        quote(&layout.path(host, layout::REDIS_PASS))
    )
}

fn sentinel_auth(layout: &Layout, host: &Host) -> String {
    format!(
        "REDISCLI_AUTH=\"$(cat {})\"; export REDISCLI_AUTH\n",
        quote(&layout.path(host, layout::SENTINEL_PASS))
    )
}

fn cli(addr: &str, port: u16) -> String {
    format!("timeout 10 redis-cli -e -h {} -p {port}", quote(addr))
}

/// One round trip: INFO replication of the local Redis, SENTINEL MASTER and CKQUORUM of the
/// local Sentinel, in `@@` sections (parsed by `observe::parse_gather`). Read-only.
pub fn gather(layout: &Layout, host: &Host) -> String {
    let a = layout.local_addr(host);
    format!(
        "{GATHER}\n{ra}echo '@@ redis'\n{r} INFO replication 2>&1\n{sa}echo '@@ sentinel-master'\n{s} SENTINEL MASTER {MASTER_NAME} 2>&1\necho '@@ sentinel-ckquorum'\n{s} SENTINEL CKQUORUM {MASTER_NAME} 2>&1\necho '@@ end'\nexit 0\n",
        ra = redis_auth(layout, host),
        r = cli(&a, layout.redis_port),
        sa = sentinel_auth(layout, host),
        s = cli(&a, layout.sentinel_port),
    )
}

/// Exits 0 when the local Redis and Sentinel both answer PONG (not LOADING, not NOAUTH).
pub fn ping(layout: &Layout, host: &Host) -> String {
    let a = layout.local_addr(host);
    format!(
        "{PING}\n{ra}r=$({r} PING 2>&1)\n[ \"$r\" = PONG ] || {{ echo \"redis: $r\"; exit 1; }}\n{sa}s=$({s} PING 2>&1)\n[ \"$s\" = PONG ] || {{ echo \"sentinel: $s\"; exit 1; }}\n",
        ra = redis_auth(layout, host),
        r = quick_cli(&a, layout.redis_port),
        sa = sentinel_auth(layout, host),
        s = quick_cli(&a, layout.sentinel_port),
    )
}

/// Makes the local Redis a replica of `master`, but only if at this moment it is still a
/// master without replicas (the guard is re-checked on the host, right before acting), and
/// persists it with CONFIG REWRITE so a restart keeps the role.
pub fn replicaof(layout: &Layout, host: &Host, master: IpAddr) -> String {
    let a = layout.local_addr(host);
    let r = cli(&a, layout.redis_port);
    format!(
        "{REPLICAOF}\n{ra}info=$({r} INFO replication 2>&1 | tr -d '\\r')\n\
         if printf '%s\\n' \"$info\" | grep -qx 'role:master' && printf '%s\\n' \"$info\" | grep -qx 'connected_slaves:0'; then\n\
         out=$({r} REPLICAOF {m} {p} 2>&1) && [ \"$out\" = OK ] || {{ echo \"REPLICAOF failed: $out\"; exit 1; }}\n\
         out=$({r} CONFIG REWRITE 2>&1) && [ \"$out\" = OK ] || {{ echo \"CONFIG REWRITE failed: $out\"; exit 1; }}\n\
         echo \"now a replica of {m}\"\n\
         else\n\
         echo \"left alone: $(printf '%s\\n' \"$info\" | grep -E '^(role|master_host|connected_slaves):' | tr '\\n' ' ')\"\n\
         fi\n",
        ra = redis_auth(layout, host),
        m = master,
        p = layout.redis_port,
    )
}

/// `SENTINEL SET kbz <pairs>` (nothing when empty) and, if asked, auth-pass from stdin.
fn sentinel_set_lines(s: &str, pairs: &[(&str, u64)], auth_pass: bool, pass_file: &str) -> String {
    let mut out = String::new();
    if !pairs.is_empty() {
        let args: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(
            "out=$({s} SENTINEL SET {MASTER_NAME} {} 2>&1) && [ \"$out\" = OK ] || {{ echo \"SENTINEL SET failed: $out\"; exit 1; }}\n",
            args.join(" ")
        ));
    }
    if auth_pass {
        out.push_str(&format!(
            "out=$({s} -x SENTINEL SET {MASTER_NAME} auth-pass < {} 2>&1) && [ \"$out\" = OK ] || {{ echo \"SENTINEL SET auth-pass failed: $out\"; exit 1; }}\n",
            quote(pass_file)
        ));
    }
    out
}

/// Makes a Sentinel that monitors nothing monitor `master` with every kbz parameter and the
/// Redis password. Guarded: if it already monitors the cluster, nothing is changed.
pub fn monitor(layout: &Layout, host: &Host, master: IpAddr, params: &SentinelParams) -> String {
    let a = layout.local_addr(host);
    let s = cli(&a, layout.sentinel_port);
    format!(
        "{MONITOR}\n{sa}if {s} SENTINEL MASTER {MASTER_NAME} >/dev/null 2>&1; then echo 'already monitoring'; exit 0; fi\n\
         out=$({s} SENTINEL MONITOR {MASTER_NAME} {master} {port} {q} 2>&1) && [ \"$out\" = OK ] || {{ echo \"SENTINEL MONITOR failed: $out\"; exit 1; }}\n{set}echo 'monitoring {master}'\n",
        sa = sentinel_auth(layout, host),
        port = layout.redis_port,
        q = params.quorum,
        set = sentinel_set_lines(
            &s,
            &params
                .all()
                .into_iter()
                .filter(|(k, _)| *k != "quorum")
                .collect::<Vec<_>>(),
            true,
            &layout.path(host, layout::REDIS_PASS)
        ),
    )
}

/// Corrects drifted Sentinel parameters (and auth-pass when the master looks down to it).
pub fn sentinel_set(
    layout: &Layout,
    host: &Host,
    pairs: &[(&'static str, u64)],
    auth_pass: bool,
) -> String {
    let a = layout.local_addr(host);
    let s = cli(&a, layout.sentinel_port);
    format!(
        "{SENTINEL_SET}\n{sa}{set}",
        sa = sentinel_auth(layout, host),
        set = sentinel_set_lines(&s, pairs, auth_pass, &layout.path(host, layout::REDIS_PASS)),
    )
}

/// Runs one check per node at once (so one unreachable node costs one short timeout, not one
/// per node) and fails when any check printed a problem. Each check prints nothing when fine.
fn in_parallel(checks: &[String]) -> String {
    let mut s = String::from("d=$(mktemp -d) || exit 1\ntrap 'rm -rf \"$d\"' EXIT\n");
    for (i, c) in checks.iter().enumerate() {
        s.push_str(&format!("( {c} ) > \"$d/{i}\" 2>&1 &\n"));
    }
    s.push_str("wait\nproblems=$(cat \"$d\"/*)\n[ -z \"$problems\" ] || { printf '%s\\n' \"$problems\"; exit 1; }\n");
    s
}

/// `redis-cli` with the short timeout used inside readiness checks.
fn quick_cli(addr: &str, port: u16) -> String {
    format!("timeout 3 redis-cli -e -h {} -p {port}", quote(addr))
}

/// Exits 0 when `master` is a master and every other node is its replica with the link up
/// and listed online by the master. Runs on any node; talks to every node by address.
pub fn wait_replication(
    layout: &Layout,
    runner: &Host,
    master: IpAddr,
    replicas: &[IpAddr],
) -> String {
    let p = layout.redis_port;
    let checks: Vec<String> = replicas
        .iter()
        .map(|r| {
            format!(
                "ri=$({c} INFO replication 2>&1 | tr -d '\\r')\n\
                 if printf '%s\\n' \"$ri\" | grep -qx 'master_host:{master}' && printf '%s\\n' \"$ri\" | grep -qx 'master_link_status:up' && printf '%s\\n' \"$info\" | grep -q '^slave[0-9]*:ip={r},.*state=online'; then :; else echo \"{r}: not streaming from {master}: $(printf '%s\\n' \"$ri\" | grep -E '^(role|master_host|master_link_status):' | tr '\\n' ' ')\"; fi",
                c = quick_cli(&r.to_string(), p),
            )
        })
        .collect();
    format!(
        "{WAIT_REPLICATION}\n{ra}\
         info=$({m} INFO replication 2>&1 | tr -d '\\r')\n\
         printf '%s\\n' \"$info\" | grep -qx 'role:master' || {{ echo \"{master}: not a master: $(printf '%s' \"$info\" | head -n 2 | tr '\\n' ' ')\"; exit 1; }}\n{par}",
        ra = redis_auth(layout, runner),
        m = quick_cli(&master.to_string(), p),
        par = in_parallel(&checks),
    )
}

/// Exits 0 when every Sentinel names `master`, passes CKQUORUM, and knows every other
/// Sentinel and every replica (what a failover needs). Runs on any node.
pub fn wait_sentinels(
    layout: &Layout,
    runner: &Host,
    master: IpAddr,
    sentinels: &[IpAddr],
) -> String {
    let nr = sentinels.len().saturating_sub(1);
    let checks: Vec<String> = sentinels
        .iter()
        .map(|ip| {
            let c = quick_cli(&ip.to_string(), layout.sentinel_port);
            format!(
                "a=$({c} SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER_NAME} 2>&1 | head -n 1)\n\
                 [ \"$a\" = {master} ] || {{ echo \"sentinel {ip}: master is '$a', not {master}\"; exit 0; }}\n\
                 q=$({c} SENTINEL CKQUORUM {MASTER_NAME} 2>&1)\n\
                 case \"$q\" in OK*) ;; *) echo \"sentinel {ip}: $q\" ;; esac\n\
                 m=$({c} SENTINEL MASTER {MASTER_NAME} 2>&1)\n\
                 r=$(printf '%s\\n' \"$m\" | field num-slaves); o=$(printf '%s\\n' \"$m\" | field num-other-sentinels)\n\
                 [ \"${{r:-0}}\" -ge {nr} ] 2>/dev/null || echo \"sentinel {ip}: knows ${{r:-0}} replica(s), needs {nr}\"\n\
                 [ \"${{o:-0}}\" -ge {nr} ] 2>/dev/null || echo \"sentinel {ip}: knows ${{o:-0}} other sentinel(s), needs {nr}\""
            )
        })
        .collect();
    format!(
        "{WAIT_SENTINELS}\n{sa}\
         field() {{ awk -v k=\"$1\" 'NR%2==1 {{ key=$0; next }} key==k {{ print; exit }}'; }}\n{par}",
        sa = sentinel_auth(layout, runner),
        par = in_parallel(&checks),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbz_core::Role;

    fn host() -> Host {
        Host::new("db1", "192.0.2.21".parse().expect("ip"), &[Role::Redis])
    }

    #[test]
    fn scripts_read_passwords_from_files_only() {
        let l = Layout::debian();
        let h = host();
        let p = SentinelParams {
            quorum: 2,
            down_after_ms: 5000,
            failover_timeout_ms: 10000,
            parallel_syncs: 1,
        };
        let m: IpAddr = "192.0.2.22".parse().expect("ip");
        for s in [
            gather(&l, &h),
            ping(&l, &h),
            replicaof(&l, &h, m),
            monitor(&l, &h, m, &p),
            sentinel_set(&l, &h, &[("quorum", 2)], true),
            wait_replication(&l, &h, m, &[h.ip]),
            wait_sentinels(&l, &h, m, &[h.ip, m]),
        ] {
            assert!(s.starts_with("# kbz-redis "), "{s}");
            assert!(!s.contains(" -a "), "{s}");
            assert!(s.contains("REDISCLI_AUTH=\"$(cat '/etc/redis/kbz-"), "{s}");
        }
        let mon = monitor(&l, &h, m, &p);
        assert!(
            mon.contains("SENTINEL MONITOR kbz 192.0.2.22 6379 2"),
            "{mon}"
        );
        assert!(
            mon.contains("-x SENTINEL SET kbz auth-pass < '/etc/redis/kbz-redis.pass'"),
            "{mon}"
        );
        assert!(mon.contains(
            "SENTINEL SET kbz down-after-milliseconds 5000 failover-timeout 10000 parallel-syncs 1"
        ));
    }

    #[test]
    fn replicaof_is_guarded_on_the_host() {
        let s = replicaof(
            &Layout::debian(),
            &host(),
            "192.0.2.22".parse().expect("ip"),
        );
        let guard = s.find("grep -qx 'connected_slaves:0'").expect("guard");
        let act = s.find("REPLICAOF 192.0.2.22 6379").expect("act");
        assert!(guard < act);
        assert!(s.contains("CONFIG REWRITE"));
    }
}
