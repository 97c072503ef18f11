//! ProxySQL on the `proxysql` hosts: a second front for the Galera cluster that routes
//! writes to one node at a time (`mysql_galera_hostgroups`, `max_writers=1`). ProxySQL is no
//! Debian package: it comes from an operator-pinned artifact (`[artifacts.proxysql]` in
//! kbz.toml: version, sha256, source; the package is fetched once into the controller's
//! download cache, checked and pushed to the host), installed with `dpkg`, and run by kbz's
//! own unit from kbz's config file. Without a pin a `proxysql` host is E008 naming what to
//! add. It cannot be downloaded where kbz is tested: it is covered by snapshots and fake
//! hosts only (the README's support table says so).

use kbz_core::artifact::ArtifactPin;
use kbz_core::component::{ComponentError, Listen};
use kbz_core::net::host_port;
use kbz_core::shell::quote;
use kbz_core::{template, Context, Host, Resource, Role};
use kbz_errors::{Code, Diagnostic};
use serde_json::json;

use crate::password::native_hash;
use crate::render::{cnf_quote, RenderedFile};
use crate::{MONITOR_USER, SECRET_APP, SECRET_MONITOR};

const CNF_T: &str = include_str!("../templates/proxysql.cnf.hbs");
const UNIT_T: &str = include_str!("../templates/kbz-proxysql.service.hbs");

/// Secret: ProxySQL's admin password (admin interface on 127.0.0.1 only).
pub const SECRET_ADMIN: &str = "proxysql_admin_password";
/// ProxySQL's admin user (not `admin`, which ProxySQL treats specially).
pub const ADMIN_USER: &str = "kbz_admin";
/// kbz's ProxySQL configuration.
pub const CNF: &str = "/etc/kbz/proxysql.cnf";
/// kbz's ProxySQL unit.
pub const UNIT: &str = "/etc/systemd/system/kbz-proxysql.service";
/// The unit's name.
pub const SERVICE: &str = "kbz-proxysql";
/// The package's own unit, kept stopped and disabled (kbz's runs instead).
pub const PACKAGED_SERVICE: &str = "proxysql";
/// ProxySQL's data directory.
pub const DATA_DIR: &str = "/var/lib/proxysql";
/// Where the pinned package is kept on the host.
pub const PACKAGE_DIR: &str = "/var/cache/kbz";
/// Client port (on the host's address).
pub const PORT: u16 = 6033;
/// Admin port (127.0.0.1 only).
pub const ADMIN_PORT: u16 = 6032;
/// Hostgroups of `mysql_galera_hostgroups`.
pub const WRITER_HG: u32 = 10;
/// Backup writers.
pub const BACKUP_WRITER_HG: u32 = 20;
/// Readers.
pub const READER_HG: u32 = 30;
/// Nodes that are not Synced.
pub const OFFLINE_HG: u32 = 9999;

/// The default pin: a version and the upstream release URL of its Debian 12 package, but no
/// sha256 (kbz has not verified one): the operator pins it in `[artifacts.proxysql]`.
pub fn default_pin() -> ArtifactPin {
    ArtifactPin::new(
        "proxysql",
        "2.7.1",
        "",
        "https://github.com/sysown/proxysql/releases/download/v{version}/proxysql_{version}-debian12_amd64.deb",
    )
}

/// The effective pin, or E008 naming what to add to kbz.toml.
pub fn pin(ctx: &Context, host: &Host) -> Result<ArtifactPin, ComponentError> {
    let p = ctx.config.artifact(&default_pin());
    if p.sha256.is_empty() {
        return Err(ComponentError::Input(
            Diagnostic::new(
                Code::E008,
                format!(
                    "{} has the proxysql role, but ProxySQL is not pinned: kbz installs it only \
                     from a package whose sha256 you pinned",
                    host.hostname
                ),
            )
            .hint(
                "add to kbz.toml: [artifacts.proxysql] version = \"2.7.1\", sha256 = \"<sha256sum of \
                 proxysql_2.7.1-debian12_amd64.deb>\" (and source = \"file:///srv/kbz/...\" or an \
                 https URL for a mirror); or remove the proxysql role",
            ),
        ));
    }
    Ok(p)
}

/// The package's path on the host.
pub fn package_path(pin: &ArtifactPin) -> String {
    format!("{PACKAGE_DIR}/proxysql_{}.deb", pin.version)
}

/// The command line of kbz's unit.
pub fn exec_start() -> String {
    format!("/usr/bin/proxysql -f --idle-threads --initial -c {CNF} -D {DATA_DIR}")
}

/// kbz's ProxySQL configuration for a host.
pub fn config(ctx: &Context, host: &Host) -> Result<String, ComponentError> {
    let servers: Vec<serde_json::Value> = ctx
        .inventory
        .with_role(Role::Mariadb)
        .iter()
        .map(|h| json!({ "name": h.hostname, "ip": h.ip.to_string(), "port": 3306 }))
        .collect();
    let m = &ctx.config.mariadb;
    template::render(
        "proxysql.cnf.hbs",
        CNF_T,
        &json!({
            "hostname": host.hostname,
            "datadir": DATA_DIR,
            "admin_user": ADMIN_USER,
            "admin_password": cnf_quote(SECRET_ADMIN, ctx.secret(SECRET_ADMIN)?.expose())?,
            "admin_port": ADMIN_PORT,
            "listen": host_port(host.ip, PORT),
            "monitor_user": MONITOR_USER,
            "monitor_password": cnf_quote(SECRET_MONITOR, ctx.secret(SECRET_MONITOR)?.expose())?,
            "servers": servers,
            "writer": WRITER_HG,
            "backup_writer": BACKUP_WRITER_HG,
            "reader": READER_HG,
            "offline": OFFLINE_HG,
            "app_user": m.app_user,
            "app_database": m.app_database,
            "app_hash": native_hash(ctx.secret(SECRET_APP)?.expose()),
        }),
    )
}

/// kbz's ProxySQL unit.
pub fn unit(host: &Host) -> Result<String, ComponentError> {
    template::render(
        "kbz-proxysql.service.hbs",
        UNIT_T,
        &json!({ "hostname": host.hostname, "exec_start": exec_start() }),
    )
}

/// The files kbz writes on a ProxySQL host.
pub fn files(ctx: &Context, host: &Host) -> Result<Vec<RenderedFile>, ComponentError> {
    Ok(vec![
        RenderedFile {
            path: CNF.into(),
            content: config(ctx, host)?,
            mode: 0o640,
            owner: "root:proxysql".into(),
        },
        RenderedFile {
            path: UNIT.into(),
            content: unit(host)?,
            mode: 0o644,
            owner: "root:root".into(),
        },
    ])
}

/// The resources of a ProxySQL host.
pub fn desired(ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
    let p = pin(ctx, host)?;
    let deb = package_path(&p);
    let mut r = vec![
        Resource::Directory {
            path: PACKAGE_DIR.into(),
            mode: 0o755,
            owner: "root:root".into(),
        },
        Resource::artifact(&deb, &p, 0o644),
        Resource::Command {
            id: "proxysql-install".into(),
            script: format!(
                "DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold {}",
                quote(&deb)
            ),
            unless: Some(format!(
                "[ \"$(dpkg-query -W -f='${{Version}}' proxysql 2>/dev/null)\" = {} ]",
                quote(&p.version)
            )),
            creates: None,
            undo: Some("dpkg --purge proxysql || true".into()),
        },
        Resource::stopped_service(PACKAGED_SERVICE),
        Resource::Directory {
            path: "/etc/kbz".into(),
            mode: 0o755,
            owner: "root:root".into(),
        },
    ];
    for f in files(ctx, host)? {
        r.push(Resource::File {
            path: f.path,
            content: f.content.into_bytes(),
            mode: f.mode,
            owner: f.owner,
            present: true,
        });
    }
    r.push(Resource::Command {
        id: "proxysql-daemon-reload".into(),
        script: "systemctl daemon-reload".into(),
        unless: Some(format!(
            "systemctl show -p ExecStart --value {SERVICE}.service | grep -qF {}",
            quote(&format!("argv[]={} ;", exec_start()))
        )),
        creates: None,
        undo: Some("systemctl daemon-reload".into()),
    });
    r.push(Resource::service(SERVICE, &[CNF, UNIT]));
    Ok(r)
}

/// Uninstall on a ProxySQL host: kbz's unit stopped, the package purged, kbz's files gone.
pub fn uninstall(ctx: &Context) -> Result<Vec<Resource>, ComponentError> {
    let p = ctx.config.artifact(&default_pin());
    let mut r = vec![
        Resource::stopped_service(SERVICE),
        Resource::stopped_service(PACKAGED_SERVICE),
        Resource::absent_package("proxysql"),
        Resource::absent_file(CNF),
        Resource::absent_file(UNIT),
    ];
    r.push(Resource::absent_artifact(&package_path(&p), &p));
    Ok(r)
}

/// ProxySQL's ports.
pub fn listens(host: &Host) -> Vec<Listen> {
    vec![
        Listen::new("ProxySQL", PORT, &[host.ip], &["proxysql"])
            .marker(CNF)
            .auth("password (the application user)"),
        Listen::new(
            "ProxySQL admin",
            ADMIN_PORT,
            &[std::net::IpAddr::from([127, 0, 0, 1])],
            &["proxysql"],
        )
        .marker(CNF)
        .auth("password (kbz_admin)"),
    ]
}
