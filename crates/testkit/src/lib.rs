//! kbz-testkit: fixtures shared by the component crates' tests, so each test states only
//! what is particular to it. Loads the bundled example (`examples/servers.tsv`,
//! `examples/kbz.toml`) with placeholder secrets, builds an [`Engine`] over a
//! [`FakeConnector`] fleet, renders a component's files as one snapshot string, and finds
//! the daemons' own validators (or says how to install them), and runs a throwaway sshd on
//! loopback with the users and sudoers rules tests log in as ([`sshd`]).
//!
//! Test support only: every helper panics with a message instead of returning an error.
//! [`FakeHost`] lives here, not in the production crates: it is strict (an unscripted
//! command is an error naming the command).

pub mod docs;
pub mod fake;
pub mod procs;
pub mod sshd;
pub mod tmux;

pub use fake::{FakeConnector, FakeFile, FakeHost, FakeService, FakeState};
pub use procs::{free_port, free_port_on, Daemons};

use kbz_core::component::HostExec;
use kbz_core::engine::RollbackOutcome;
use kbz_core::{
    Component, Config, Context, Engine, EngineError, Executor, Host, Inventory, Output, Resource,
    Role, Secrets,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The workspace root (where `examples/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bundled example inventory, `examples/servers.tsv`.
pub fn example_inventory() -> Inventory {
    Inventory::load(&workspace_root().join("examples/servers.tsv")).expect("example inventory")
}

/// The bundled example config, `examples/kbz.toml`.
pub fn example_config() -> Config {
    Config::load(&workspace_root().join("examples/kbz.toml")).expect("example config")
}

/// The example inventory and config with a placeholder (`<name>-PLACEHOLDER`) for every
/// secret named.
pub fn example_context<I: IntoIterator<Item = String>>(secret_names: I) -> Context {
    Context::new(
        example_inventory(),
        example_config(),
        Secrets::placeholders(secret_names),
    )
}

/// `ctx` with `[security] tls = true` and an in-memory CA with a certificate for every etcd
/// and PostgreSQL member.
pub fn with_tls(ctx: &Context) -> Context {
    let mut cfg = (*ctx.config).clone();
    cfg.security.tls = true;
    let pki = kbz_core::pki::Pki::in_memory(
        &cfg.cluster.slug(),
        &kbz_core::pki::Member::of_inventory(&ctx.inventory, &cfg),
    )
    .expect("in-memory CA");
    Context::new((*ctx.inventory).clone(), cfg, (*ctx.secrets).clone()).with_pki(pki)
}

/// An insta filter that replaces every PEM block (generated keys and certificates change on
/// each run) with `[LABEL PEM]`.
pub const PEM_FILTER: (&str, &str) = (
    r"(?s)-----BEGIN ([A-Z ]+)-----.*?-----END [A-Z ]+-----",
    "[$1 PEM]",
);

/// The example's database trio without the rest of the fleet: `db1`..`db3` at
/// `{ip_prefix}1`..`{ip_prefix}3`, each with the `etcd` and `postgres` roles.
pub fn db_inventory(ip_prefix: &str) -> Inventory {
    Inventory {
        path: "servers.tsv".into(),
        hosts: (1..=3)
            .map(|i| {
                Host::new(
                    &format!("db{i}"),
                    format!("{ip_prefix}{i}").parse().expect("ip"),
                    &[Role::Etcd, Role::Postgres],
                )
            })
            .collect(),
    }
}

/// An engine running `components` with `ctx` against a fresh fake Debian host for every
/// inventory host. The fleet is returned to script answers and inspect state; the engine
/// shares it, so scripting it before a run is enough.
pub fn fake_engine(
    ctx: Context,
    components: Vec<Arc<dyn Component>>,
) -> (Engine, Arc<FakeConnector>) {
    let fleet = Arc::new(FakeConnector::debian_fleet(&ctx.inventory.hosts));
    (Engine::new(ctx, components, fleet.clone()), fleet)
}

/// `hosts` with their fake executors from `fleet`, for cluster steps and health checks.
pub fn host_execs<'a>(
    fleet: &FakeConnector,
    hosts: impl IntoIterator<Item = &'a Host>,
) -> Vec<HostExec> {
    hosts
        .into_iter()
        .map(|h| HostExec {
            host: h.clone(),
            exec: fleet
                .host(&h.hostname)
                .unwrap_or_else(|| panic!("no fake host {}", h.hostname))
                as Arc<dyn Executor>,
        })
        .collect()
}

/// The hosts of `ctx` that `component` applies to, in inventory order.
pub fn members(component: &dyn Component, ctx: &Context) -> Vec<Host> {
    ctx.inventory
        .hosts
        .iter()
        .filter(|h| component.applies_to(h))
        .cloned()
        .collect()
}

/// The hostnames of `hosts`, for asserting who is a member.
pub fn hostnames(hosts: &[Host]) -> Vec<&str> {
    hosts.iter().map(|h| h.hostname.as_str()).collect()
}

/// Asserts that the failed run `err` was rolled back on every host (the hosts' exact prior
/// state is the caller's to compare, with [`FakeConnector::states`]).
pub fn assert_rolled_back(err: &EngineError) {
    match err {
        EngineError::Failed { rollback, .. } => {
            assert_eq!(*rollback, RollbackOutcome::RolledBack, "{err}")
        }
        e => panic!("not a failed, rolled-back run: {e:?}"),
    }
}

/// Every fake host's SSH round trips so far as `host=N` words in name order (a converged
/// re-run's cost, asserted per component).
pub fn round_trips(fleet: &FakeConnector) -> String {
    use kbz_core::Executor;
    fleet
        .hosts()
        .map(|(n, h)| format!("{n}={}", h.round_trips()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Resets every fake host's round-trip counter.
pub fn reset_round_trips(fleet: &FakeConnector) {
    for (_, h) in fleet.hosts() {
        h.reset_round_trips();
    }
}

/// A command's result: `stdout` and exit `status`, nothing on stderr.
pub fn output(stdout: &str, status: i32) -> Output {
    Output {
        status,
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
    }
}

/// Every file resource `component` declares for `host`, present or absent, as one string
/// for a snapshot: a header line with path, mode, owner and presence, then the content.
pub fn rendered_files(component: &dyn Component, ctx: &Context, host: &Host) -> String {
    let mut out = String::new();
    for r in component.desired(ctx, host).expect("desired") {
        if let Resource::File {
            path,
            content,
            mode,
            owner,
            present,
        } = r
        {
            out.push_str(&format!(
                "=== {path} mode {mode:04o} {owner} present={present}\n"
            ));
            out.push_str(&String::from_utf8_lossy(&content));
        }
    }
    out
}

/// Every present file `component` declares for `host`: (path, content as UTF-8).
pub fn present_files(
    component: &dyn Component,
    ctx: &Context,
    host: &Host,
) -> Vec<(String, String)> {
    component
        .desired(ctx, host)
        .expect("desired")
        .into_iter()
        .filter_map(|r| match r {
            Resource::File {
                path,
                content,
                present: true,
                ..
            } => Some((path, String::from_utf8(content).expect("utf8"))),
            _ => None,
        })
        .collect()
}

/// The one snapshot naming scheme (docs/architecture.md, "Tests"): `<scope>__<subject>`,
/// scope the host (or `fleet`), subject a file path flattened or a label:
/// `lb1__etc_haproxy_haproxy.cfg`, `db1__files_tls`.
pub fn snapshot_name(hostname: &str, path: &str) -> String {
    format!(
        "{hostname}__{}",
        path.trim_start_matches('/').replace('/', "_")
    )
}

/// Writes `secrets` (name, value) as `state_dir/secrets.toml`, mode 0600 as kbz wants it
/// (creating the directory).
pub fn write_secrets(state_dir: &Path, secrets: &[(&str, &str)]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(state_dir).expect("state dir");
    let text: String = secrets
        .iter()
        .map(|(n, v)| format!("{n} = \"{v}\"\n"))
        .collect();
    let path = state_dir.join("secrets.toml");
    std::fs::write(&path, text).expect("secrets");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A project in `dir` for the binaries' black-box tests: three hosts n1-n3 on 127.0.0.1-3
/// whose SSH port (1) is closed, so every host is unreachable; kbz.toml with the cluster
/// `loop`, loopback VIPs and `extra_config` appended; `.kbz/secrets.toml` holding `secrets`.
pub fn unreachable_fleet(dir: &Path, extra_config: &str, secrets: &[(&str, &str)]) {
    let inv: String = (1..=3)
        .map(|i| format!("n{i}\t127.0.0.{i}\tlb,etcd,postgres,redis\troot\t1\n"))
        .collect();
    std::fs::write(dir.join("servers.tsv"), inv).expect("inventory");
    std::fs::write(
        dir.join("kbz.toml"),
        format!(
            "[cluster]\nname = \"loop\"\n\n[vips]\npostgres = \"127.0.1.10\"\nredis = \"127.0.1.11\"\n{extra_config}"
        ),
    )
    .expect("config");
    write_secrets(&dir.join(".kbz"), secrets);
}

/// Where [`require_tool`] looks, in order.
const TOOL_DIRS: &[&str] = &[
    "/usr/sbin",
    "/sbin",
    "/usr/local/sbin",
    "/usr/bin",
    "/bin",
    "/usr/local/bin",
];

/// The path of a validator or helper binary the test needs. Panics when it is missing, with
/// the `apt-get install -y {apt_package}` line that provides it (`.ci/run` installs them).
pub fn require_tool(name: &str, apt_package: &str) -> PathBuf {
    TOOL_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed (looked in {}), so this test cannot run: install it \
                 with `apt-get install -y {apt_package}` (.ci/run does)",
                TOOL_DIRS.join(", ")
            )
        })
}

/// Checks every script with `sh -n` (syntax only, nothing runs); panics naming the first
/// script that does not parse.
pub fn assert_valid_sh<S: AsRef<str>>(scripts: impl IntoIterator<Item = S>) {
    for s in scripts {
        let s = s.as_ref();
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(s)
            .output()
            .expect("run sh -n");
        assert!(
            out.status.success(),
            "{}\n--- script ---\n{s}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_context_has_placeholders_for_the_names_given() {
        let ctx = example_context(vec!["demo_password".to_string()]);
        assert!(!ctx.inventory.hosts.is_empty());
        assert_eq!(
            ctx.secret("demo_password").expect("secret").expose(),
            "demo_password-PLACEHOLDER"
        );
        assert!(ctx.secret("other").is_err());
    }

    #[test]
    fn db_inventory_is_three_etcd_and_postgres_hosts() {
        let inv = db_inventory("192.0.2.2");
        let names: Vec<String> = inv
            .hosts
            .iter()
            .map(|h| format!("{} {}", h.hostname, h.ip))
            .collect();
        assert_eq!(
            names,
            ["db1 192.0.2.21", "db2 192.0.2.22", "db3 192.0.2.23"]
        );
        assert!(inv
            .hosts
            .iter()
            .all(|h| h.has(Role::Etcd) && h.has(Role::Postgres)));
    }

    #[test]
    fn snapshot_names_flatten_the_path() {
        assert_eq!(
            snapshot_name("lb1", "/etc/keepalived/keepalived.conf"),
            "lb1__etc_keepalived_keepalived.conf"
        );
    }

    #[test]
    fn fake_engine_has_a_host_per_inventory_host() {
        let ctx = Context::new(
            db_inventory("192.0.2.2"),
            Config::default(),
            Secrets::in_memory(),
        );
        let (_, fleet) = fake_engine(ctx.clone(), Vec::new());
        assert_eq!(fleet.hosts().count(), 3);
        let execs = host_execs(&fleet, &ctx.inventory.hosts);
        assert_eq!(execs.len(), 3);
        assert_eq!(execs[1].host.hostname, "db2");
    }

    #[test]
    fn require_tool_finds_sh_and_names_the_package_otherwise() {
        assert!(require_tool("sh", "dash").ends_with("sh"));
        let e = std::panic::catch_unwind(|| require_tool("kbz-no-such-tool", "kbz-pkg"))
            .expect_err("missing tool");
        let msg = e.downcast_ref::<String>().expect("message");
        assert!(msg.contains("apt-get install -y kbz-pkg"), "{msg}");
    }
}
