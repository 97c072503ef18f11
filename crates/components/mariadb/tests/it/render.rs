//! Snapshots of every file kbz renders for MariaDB Galera (mq1-mq3 of the example
//! inventory) and ProxySQL (lb1 with the proxysql role added), the resource plans, the
//! cluster step scripts; the Galera config checked by MariaDB's own option parser and
//! server, the shell scripts by `sh -n`.

use kbz_core::{Component, Resource};
use kbz_mariadb::{proxysql, render, scripts, users, Layout, Mariadb};
use kbz_testkit::snapshot_name as name;

use crate::common::{example_ctx, mariadb_hosts, proxysql_ctx};

#[test]
fn every_rendered_file_of_every_mariadb_host() {
    let ctx = example_ctx();
    let hosts = mariadb_hosts(&ctx);
    assert_eq!(hosts.len(), 3);
    for h in &hosts {
        for f in render::files(&ctx, h, &Layout::debian()).expect("render") {
            let header = format!("{} mode {:04o} owner {}", f.path, f.mode, f.owner);
            insta::assert_snapshot!(name(&h.hostname, &f.path), f.content, &header);
        }
    }
}

#[test]
fn proxysql_files_of_a_proxysql_host() {
    let ctx = proxysql_ctx();
    let h = ctx.inventory.host("lb1").expect("lb1").clone();
    for f in proxysql::files(&ctx, &h).expect("render") {
        let header = format!("{} mode {:04o} owner {}", f.path, f.mode, f.owner);
        insta::assert_snapshot!(name(&h.hostname, &f.path), f.content, &header);
    }
    let cnf = proxysql::config(&ctx, &h).expect("cnf");
    // Only the application user's hash, never its password.
    let app = ctx.secret(kbz_mariadb::SECRET_APP).expect("secret");
    assert!(!cnf.contains(app.expose()));
    assert!(cnf.contains(&kbz_mariadb::password::native_hash(app.expose())));
    assert!(cnf.contains("max_writers=1"));
    assert!(cnf.contains("interfaces=\"192.0.2.11:6033\""));
    assert!(cnf.contains("mysql_ifaces=\"127.0.0.1:6032\""));
}

/// One line per resource: what it is, without file contents (those are snapshotted above).
fn outline(r: &[Resource]) -> String {
    r.iter()
        .map(|x| match x {
            Resource::File {
                path,
                mode,
                owner,
                present: true,
                ..
            } => format!("file {path} {mode:04o} {owner}"),
            Resource::File { path, .. } => format!("absent {path}"),
            Resource::Service {
                name,
                enabled,
                running,
                restart_on,
            } => format!(
                "service {name} enabled={enabled} running={running} restart_on=[{}]",
                restart_on.join(", ")
            ),
            Resource::Command {
                id,
                script,
                unless,
                undo,
                ..
            } => format!(
                "command {id}\n  script: {}\n  unless: {}\n  undo: {}",
                script.trim_end().replace('\n', "\n          "),
                unless.as_deref().unwrap_or("-"),
                undo.as_deref().unwrap_or("-")
            ),
            Resource::Package { name, present } => format!(
                "package {name} {}",
                if *present { "installed" } else { "purged" }
            ),
            Resource::Directory { path, mode, owner } => format!("dir {path} {mode:04o} {owner}"),
            Resource::Artifact {
                path,
                pin,
                mode,
                owner,
                present,
            } => format!(
                "artifact {path} {mode:04o} {owner} present={present} {}",
                pin.describe()
            ),
            other => format!(
                "{} {}",
                other.id(),
                serde_json::to_string(other).unwrap_or_default()
            ),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn install_and_uninstall_plans() {
    let ctx = example_ctx();
    let h = &mariadb_hosts(&ctx)[0];
    insta::assert_snapshot!(
        "mq1__install_resources",
        outline(&Mariadb.desired(&ctx, h).expect("desired"))
    );
    insta::assert_snapshot!(
        "mq1__uninstall_resources",
        outline(&Mariadb.uninstall(&ctx, h).expect("uninstall"))
    );
    let pctx = proxysql_ctx();
    let lb = pctx.inventory.host("lb1").expect("lb1").clone();
    insta::assert_snapshot!(
        "lb1__install_resources",
        outline(&Mariadb.desired(&pctx, &lb).expect("desired"))
    );
    insta::assert_snapshot!(
        "lb1__uninstall_resources",
        outline(&Mariadb.uninstall(&pctx, &lb).expect("uninstall"))
    );
}

#[test]
fn a_proxysql_host_without_a_pin_is_e008_naming_what_to_add() {
    let ctx = crate::common::proxysql_ctx_pinned(false);
    let lb = ctx.inventory.host("lb1").expect("lb1").clone();
    let e = Mariadb.desired(&ctx, &lb).expect_err("no pin");
    assert_eq!(kbz_errors::HasCode::code(&e), kbz_errors::Code::E008);
    let shown = format!("{e:?}");
    assert!(shown.contains("[artifacts.proxysql]"), "{shown}");
    // The validator says the same before anything connects.
    let d = kbz_core::config::mariadb::check_proxysql_pin(&ctx.inventory, &ctx.config, "kbz.toml");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].code, kbz_errors::Code::E008);
    assert!(d[0].message.contains("lb1, lb2"), "{}", d[0].message);
}

#[test]
fn cluster_step_scripts_and_users_sql() {
    let ctx = example_ctx();
    let l = Layout::debian();
    let hosts = mariadb_hosts(&ctx);
    let h = &hosts[1];
    let all = [
        scripts::gather(&l, h),
        scripts::recover(&l, h),
        scripts::bootstrap(&l, h, false),
        scripts::bootstrap(&l, h, true),
        scripts::join(&l, h),
        scripts::restart(&l, h),
        scripts::wait_synced(&l, h, 3),
        scripts::users(&l, h),
    ];
    kbz_testkit::assert_valid_sh(&all);
    insta::assert_snapshot!("mq2__cluster_step_scripts", all.join("\n"));
    let sql = users::sql(&ctx).expect("sql");
    for n in Mariadb.secret_names() {
        let s = ctx.secret(&n).expect("secret");
        assert!(!sql.contains(s.expose()), "{n} in the users' SQL");
    }
    insta::assert_snapshot!("fleet__users_sql", sql);
}

#[test]
fn passwords_never_reach_a_command_line() {
    let ctx = proxysql_ctx();
    let secrets: Vec<String> = Mariadb
        .secret_names()
        .iter()
        .map(|n| ctx.secret(n).expect("secret").expose().to_string())
        .collect();
    for h in &ctx.inventory.hosts {
        if !Mariadb.applies_to(h) {
            continue;
        }
        for r in Mariadb
            .desired(&ctx, h)
            .expect("desired")
            .iter()
            .chain(&Mariadb.uninstall(&ctx, h).expect("uninstall"))
        {
            for text in r.scripts() {
                for s in &secrets {
                    assert!(!text.contains(s.as_str()), "secret in {}", r.id());
                }
            }
        }
    }
}

#[test]
fn galera_config_is_accepted_by_mariadbs_own_parser_and_server() {
    let my_print_defaults = kbz_testkit::require_tool("my_print_defaults", "mariadb-server");
    let mariadbd = kbz_testkit::require_tool("mariadbd", "mariadb-server");
    let ctx = example_ctx();
    let h = &mariadb_hosts(&ctx)[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let cnf = dir.path().join("60-kbz-galera.cnf");
    std::fs::write(
        &cnf,
        render::galera_cnf(&ctx, h, &Layout::debian()).expect("cnf"),
    )
    .expect("write");
    let out = std::process::Command::new(&my_print_defaults)
        .arg(format!("--defaults-file={}", cnf.display()))
        .arg("mysqld")
        .output()
        .expect("my_print_defaults");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opts = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--bind-address=192.0.2.31",
        "--wsrep_on=ON",
        "--wsrep_provider=/usr/lib/galera/libgalera_smm.so",
        "--wsrep_cluster_address=gcomm://192.0.2.31:4567,192.0.2.32:4567,192.0.2.33:4567",
        "--wsrep_node_address=192.0.2.31:4567",
        "--wsrep_cluster_name=example",
        "--binlog_format=ROW",
        "--innodb_autoinc_lock_mode=2",
        "--innodb_flush_log_at_trx_commit=1",
        "--wsrep_sst_method=mariabackup",
    ] {
        assert!(opts.lines().any(|l| l == want), "{want} not in:\n{opts}");
    }
    assert!(opts
        .lines()
        .any(|l| l.starts_with("--wsrep_sst_auth=kbz_sst:")));
    // The server itself accepts every option (an unknown one fails `--help --verbose`).
    let out = std::process::Command::new(&mariadbd)
        .arg(format!("--defaults-file={}", cnf.display()))
        .args(["--user=mysql", "--help", "--verbose"])
        .output()
        .expect("mariadbd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("unknown variable") && !err.contains("unknown option"),
        "{err}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["innodb-flush-log-at-trx-commit", "1"]),
        "the server did not read innodb_flush_log_at_trx_commit"
    );
}
