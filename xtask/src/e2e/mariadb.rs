//! e2e: MariaDB Galera on the lab (module 8), called by the coordinator after the install
//! once the lab has the `mariadb` role on three hosts and `[vips] mariadb`. Every node Synced
//! in one Primary component of every node with one state uuid; a row written on the first
//! node is read on the others and, as the application user, through the VIP (HAProxy's one
//! writer: the first node); then a power cut of every Galera node at once (`lab kill`, then
//! `lab start`) after which a re-run of kbz-install ends with every node Synced and every
//! row kept (Galera's pc.recovery may re-form the cluster by itself at boot, or kbz does);
//! then every server SIGKILLed with its restart cancelled, which Galera cannot recover by
//! itself: the re-run must make a `bootstrap` cluster change "full-cluster recovery" on the
//! node with the highest seqno, keep every row and take writes through the VIP again; a
//! further re-run changes nothing.

use anyhow::{ensure, Context as _, Result};
use fs_err as fs;
use std::time::Instant;

use super::{
    changed, cluster_changes, eventually, install, json, kbz_install, on, on_stdin, secret, step,
};
use crate::lab::{self, LabInfo};

/// The application user and database of the lab's kbz.toml (`[mariadb]`, defaults app/app).
fn app_names(cfg: &toml::Table) -> (String, String) {
    let get = |k: &str| {
        cfg.get("mariadb")
            .and_then(|m| m.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or("app")
            .to_string()
    };
    (get("app_user"), get("app_database"))
}

/// `SHOW STATUS` values of one node, as root over its local socket.
fn wsrep(host: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let out = on(
        host,
        "mariadb -N -B -e \"SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment','wsrep_cluster_size','wsrep_cluster_status','wsrep_cluster_state_uuid')\"",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn all_synced(members: &[String]) -> Result<bool> {
    let mut uuids = std::collections::BTreeSet::new();
    for m in members {
        let s = wsrep(m)?;
        let ok = s.get("wsrep_local_state_comment").map(String::as_str) == Some("Synced")
            && s.get("wsrep_cluster_status").map(String::as_str) == Some("Primary")
            && s.get("wsrep_cluster_size") == Some(&members.len().to_string());
        if !ok {
            return Ok(false);
        }
        uuids.insert(
            s.get("wsrep_cluster_state_uuid")
                .cloned()
                .unwrap_or_default(),
        );
    }
    Ok(uuids.len() == 1)
}

/// SQL as the application user through `addr` (the VIP), from `host`; the password goes on
/// stdin into a temporary client file, never into argv.
fn app_sql(host: &str, addr: &str, user: &str, password: &str, sql: &str) -> Result<String> {
    let script = format!(
        "f=$(mktemp) && cat > \"$f\" && timeout 20 mariadb --defaults-extra-file=\"$f\" -h {addr} -P 3306 -u {user} -N -B -e \"{sql}\"; rc=$?; rm -f \"$f\"; exit $rc"
    );
    let escaped = password.replace('\\', "\\\\").replace('"', "\\\"");
    on_stdin(
        host,
        &script,
        &format!("[client]\npassword = \"{escaped}\"\n"),
    )
}

/// Runs kbz-install; its seconds and the mariadb "full-cluster recovery" cluster change, if
/// it made one.
fn rerun_and_recovery(
    bin: &std::path::Path,
    inv: &str,
) -> Result<(f64, Option<serde_json::Value>)> {
    let t = Instant::now();
    let r = install(bin, &["--inventory", inv, "--yes", "--json"])?;
    let secs = t.elapsed().as_secs_f64();
    ensure!(
        r.code == 0,
        "the re-run failed ({}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let report = json(&r)?;
    let recovery = report["cluster_changes"].as_array().and_then(|a| {
        a.iter()
            .find(|c| {
                c["component"] == "mariadb"
                    && c["kind"] == "bootstrap"
                    && c["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("full-cluster recovery"))
            })
            .cloned()
    });
    Ok((secs, recovery))
}

/// Every node Synced with `rows` rows in the e2e table.
fn check_rows(members: &[String], db: &str, rows: &str) -> Result<()> {
    eventually(120, "every Galera node Synced", || all_synced(members))?;
    for m in members {
        let n = on(
            m,
            &format!("mariadb -N -B -e \"SELECT COUNT(*) FROM {db}.kbz_e2e\""),
        )?;
        ensure!(n == rows, "{m} has {n} row(s), {rows} before the outage");
    }
    Ok(())
}

pub fn scenario(info: &LabInfo) -> Result<()> {
    let inv = kbz_core::Inventory::load(&info.servers_tsv)
        .map_err(|d| anyhow::anyhow!("{d:?}"))
        .context("the lab inventory")?;
    let members: Vec<String> = inv
        .with_role(kbz_core::Role::Mariadb)
        .iter()
        .map(|h| h.hostname.clone())
        .collect();
    ensure!(
        members.len() >= 3,
        "the lab has {} host(s) with the mariadb role; add `mariadb` to three hosts' roles in the lab inventory",
        members.len()
    );
    let cfg: toml::Table = fs::read_to_string(&info.config)?.parse()?;
    let vip = cfg
        .get("vips")
        .and_then(|v| v.get("mariadb"))
        .and_then(|v| v.as_str())
        .context("the lab's kbz.toml has no [vips] mariadb")?
        .to_string();
    let (user, db) = app_names(&cfg);
    let password = secret(info, kbz_mariadb::SECRET_APP)?;
    let bin = kbz_install()?;
    let inv_path = info.servers_tsv.display().to_string();

    step("mariadb: every node Synced in one Primary component");
    eventually(120, "every Galera node Synced", || all_synced(&members))?;

    step("mariadb: a write on one node, read on the others and through the VIP");
    let tag = format!("e2e-{}", std::process::id());
    on(
        &members[0],
        &format!(
            "mariadb -e \"CREATE TABLE IF NOT EXISTS {db}.kbz_e2e (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)); INSERT INTO {db}.kbz_e2e (v) VALUES ('{tag}')\""
        ),
    )?;
    for m in &members[1..] {
        eventually(30, &format!("the row on {m}"), || {
            Ok(on(
                m,
                &format!(
                    "mariadb -N -B -e \"SELECT COUNT(*) FROM {db}.kbz_e2e WHERE v = '{tag}'\""
                ),
            )? == "1")
        })?;
    }
    let got = app_sql(
        &members[1],
        &vip,
        &user,
        &password,
        &format!("SELECT v FROM {db}.kbz_e2e WHERE v = '{tag}'"),
    )?;
    ensure!(got == tag, "through the VIP {vip}: {got}");
    let writer = app_sql(
        &members[1],
        &vip,
        &user,
        &password,
        "SELECT @@wsrep_node_name",
    )?;
    ensure!(
        writer == members[0],
        "HAProxy's writer is {writer}, not the first node {}",
        members[0]
    );
    app_sql(
        &members[2],
        &vip,
        &user,
        &password,
        &format!("INSERT INTO {db}.kbz_e2e (v) VALUES ('{tag}-vip')"),
    )?;
    let rows = on(
        &members[0],
        &format!("mariadb -N -B -e \"SELECT COUNT(*) FROM {db}.kbz_e2e\""),
    )?;
    println!("mariadb: {rows} row(s), writer through {vip} is {writer}");

    step("mariadb: power cut of every Galera node, then a re-run of kbz-install");
    for m in &members {
        lab::kill(m)?;
    }
    for m in &members {
        lab::start(m)?;
    }
    // The nodes boot with mariadb enabled: when all come back in time, Galera's own
    // pc.recovery may re-form the Primary component by itself; otherwise they give up after
    // pc.wait_prim_timeout and kbz's re-run must recover. Either way the re-run ends with
    // every node Synced and every row kept.
    let (secs, recovered) = rerun_and_recovery(&bin, &inv_path)?;
    match &recovered {
        Some(c) => println!("mariadb: kbz recovered in {secs:.1}s (whole re-run): {} {}", c["host"], c["detail"]),
        None => println!("mariadb: Galera re-formed its Primary component by itself (pc.recovery); re-run {secs:.1}s"),
    }
    check_rows(&members, &db, &rows)?;

    step("mariadb: every server SIGKILLed and kept down, recovery by a re-run of kbz-install");
    // A crash Galera cannot recover by itself: each server killed (grastate seqno -1) and
    // its unit's automatic restart cancelled, so no node runs when kbz looks.
    for m in &members {
        on(m, "systemctl kill -s KILL mariadb.service; sleep 1; systemctl stop mariadb.service; systemctl is-active mariadb.service || true")?;
    }
    let (secs, recovered) = rerun_and_recovery(&bin, &inv_path)?;
    let c = recovered
        .context("the re-run after every server was killed made no full-cluster recovery")?;
    println!(
        "mariadb: kbz recovered in {secs:.1}s (whole re-run): {} {}",
        c["host"], c["detail"]
    );
    check_rows(&members, &db, &rows)?;
    app_sql(
        &members[0],
        &vip,
        &user,
        &password,
        &format!("INSERT INTO {db}.kbz_e2e (v) VALUES ('{tag}-after')"),
    )?;

    step("mariadb: a further re-run changes nothing");
    let r = install(&bin, &["--inventory", &inv_path, "--yes", "--json"])?;
    ensure!(r.code == 0, "re-run failed:\n{}\n{}", r.stdout, r.stderr);
    let report = json(&r)?;
    let (ops, cluster) = (changed(&report)?, cluster_changes(&report)?);
    ensure!(
        ops == 0 && cluster == 0,
        "the re-run after the recovery changed {ops} operations and made {cluster} cluster changes:\n{}",
        r.stdout
    );
    Ok(())
}
