//! e2e: turning `[security] tls` on for a running cluster, by the procedure of
//! docs/security.md ("Turning TLS on for a running cluster"), on the rebuilt lab that was
//! installed with `tls = false`. Canary rows and the PostgreSQL system identifier are taken
//! before; the flipped config is first refused by the preflight (E077, nothing changed);
//! then, exactly as the docs say: the peer TLS files with http listeners on every member
//! (restarted one at a time), each member's peer URL moved to https in turn (`member
//! update`, its file, restart, cluster health), Patroni paused, `kbz-install --yes`,
//! Patroni resumed. Afterwards the same cluster (system identifier, rows) leads with two
//! streaming replicas, etcd refuses a client without a certificate, and a re-run changes
//! nothing.

use anyhow::{ensure, Context as _, Result};
use fs_err as fs;
use std::path::Path;

use super::reinstall::{pg_leader, psql};
use super::{eventually, install, json, on, on_stdin, rerun_changes_nothing, step};
use crate::lab::LabInfo;

/// The canary table the migration must keep.
const CANARY: &str = "kbz_e2e_tls_migration";
/// Patroni's command line on a member.
const PATRONICTL: &str = "patronictl -c /etc/patroni/config.yml";

/// Sets `[security] tls` in the lab's kbz.toml.
pub fn set_tls(info: &LabInfo, on: bool) -> Result<()> {
    let cfg = fs::read_to_string(&info.config)?;
    let (from, to) = if on {
        ("tls = false", "tls = true")
    } else {
        ("tls = true", "tls = false")
    };
    ensure!(
        cfg.contains(from),
        "{} has no `{from}` line:\n{cfg}",
        info.config.display()
    );
    fs::write(&info.config, cfg.replacen(from, to, 1))?;
    Ok(())
}

/// `etcdctl` over plaintext against the member's own client URL.
fn etcdctl_plain(ip: &str, args: &str) -> String {
    format!(
        "ETCDCTL_API=3 etcdctl --endpoints=http://{ip}:2379 --dial-timeout=2s --command-timeout=5s {args}"
    )
}

/// Waits until every member of the cluster answers healthy (asked through `ip`).
fn wait_cluster_healthy(host: &str, ip: &str) -> Result<()> {
    eventually(60, &format!("etcd healthy after {host} restarted"), || {
        Ok(
            crate::lab::output(host, &etcdctl_plain(ip, "endpoint health --cluster"))?
                .status
                .success(),
        )
    })
}

/// Runs the scenario on a lab converged with `tls = false`; leaves it converged with TLS.
pub fn scenario(bin: &Path, info: &LabInfo) -> Result<()> {
    let inv = info.servers_tsv.display().to_string();
    let etcd: Vec<(String, String)> = info
        .hosts
        .iter()
        .filter(|h| h.roles.iter().any(|r| r == "etcd"))
        .map(|h| (h.name.clone(), h.ip.to_string()))
        .collect();
    ensure!(etcd.len() == 3, "the lab has {} etcd members", etcd.len());
    let first = &etcd[0].0;

    step("TLS migration: canary rows and the system identifier of the plaintext cluster");
    on(
        first,
        "grep -q '^ETCD_LISTEN_PEER_URLS=\"http://' /etc/default/etcd",
    )
    .context("the rebuilt lab's etcd is not plaintext")?;
    let leader = pg_leader(info)?;
    psql(
        &leader,
        &format!(
            "DROP TABLE IF EXISTS {CANARY}; CREATE TABLE {CANARY} (i int); \
             INSERT INTO {CANARY} SELECT generate_series(1, 500);"
        ),
    )?;
    let sysid = psql(&leader, "SELECT system_identifier FROM pg_control_system()")?;
    println!("500 rows in {CANARY} on {leader}, system identifier {sysid}");

    step("TLS migration: docs step 1: tls = true on the plaintext cluster is refused before any change (E077)");
    set_tls(info, true)?;
    let r = install(bin, &["--inventory", &inv, "--yes", "--json"])?;
    ensure!(
        r.code == 1,
        "the install with tls = true ran over plaintext etcd members (exit {}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let report = json(&r)?;
    let findings = report["preflight"]["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (name, _) in &etcd {
        ensure!(
            findings.iter().any(|f| f["host"] == name.as_str()
                && f["code"] == kbz_errors::Code::E077.to_string().as_str()
                && f["severity"] == "error"),
            "no E077 error for {name}'s plaintext etcd peers:\n{report:#}"
        );
    }
    ensure!(
        r.stderr.contains("nothing was changed"),
        "the refusal does not say nothing changed:\n{}",
        r.stderr
    );
    let tls = info.dir.join(".kbz/tls");
    println!(
        "refused with E077 on every member; the certificates are in {}",
        tls.display()
    );

    step("TLS migration, docs step 2: peer TLS files with http listeners, members restarted one at a time");
    let ca = fs::read_to_string(tls.join("ca.crt"))?;
    for (name, ip) in &etcd {
        let cert = fs::read_to_string(tls.join(format!("{name}.crt")))?;
        let key = fs::read_to_string(tls.join(format!("{name}.key")))?;
        on(name, "install -d -m 0750 -o root -g etcd /etc/etcd/kbz-tls")?;
        on_stdin(
            name,
            "install -m 0644 -o root -g root /dev/stdin /etc/etcd/kbz-tls/ca.crt",
            &ca,
        )?;
        on_stdin(
            name,
            "install -m 0644 -o root -g root /dev/stdin /etc/etcd/kbz-tls/member.crt",
            &cert,
        )?;
        on_stdin(
            name,
            "umask 077 && install -m 0600 -o etcd -g etcd /dev/stdin /etc/etcd/kbz-tls/member.key",
            &key,
        )?;
        on(
            name,
            "printf '%s\\n' 'ETCD_PEER_TRUSTED_CA_FILE=\"/etc/etcd/kbz-tls/ca.crt\"' \
             'ETCD_PEER_CERT_FILE=\"/etc/etcd/kbz-tls/member.crt\"' \
             'ETCD_PEER_KEY_FILE=\"/etc/etcd/kbz-tls/member.key\"' >> /etc/default/etcd && \
             systemctl restart etcd",
        )?;
        wait_cluster_healthy(name, ip)?;
        println!("{name}: peer certificate in place, restarted, cluster healthy");
    }

    step("TLS migration, docs step 3: each member's peer URL moved to https in turn");
    for (name, ip) in &etcd {
        let list = on(name, &etcdctl_plain(ip, "member list"))?;
        let id = list
            .lines()
            .map(|l| l.split(", ").collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == name.as_str())
            .map(|f| f[0].to_string())
            .with_context(|| format!("{name} is not in the member list:\n{list}"))?;
        on(
            name,
            &etcdctl_plain(
                ip,
                &format!("member update {id} --peer-urls=https://{ip}:2380"),
            ),
        )?;
        on(
            name,
            "sed -i -e 's#^ETCD_LISTEN_PEER_URLS=\"http://#ETCD_LISTEN_PEER_URLS=\"https://#' \
             -e 's#^ETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://#ETCD_INITIAL_ADVERTISE_PEER_URLS=\"https://#' \
             /etc/default/etcd && echo 'ETCD_PEER_CLIENT_CERT_AUTH=\"true\"' >> /etc/default/etcd && \
             systemctl restart etcd",
        )?;
        wait_cluster_healthy(name, ip)?;
        println!("{name} ({id}): peers over https, cluster healthy");
    }
    let list = on(first, &etcdctl_plain(&etcd[0].1, "member list"))?;
    let peers: Vec<&str> = list.lines().filter_map(|l| l.split(", ").nth(3)).collect();
    ensure!(
        peers.len() == 3 && peers.iter().all(|u| u.starts_with("https://")),
        "some member still has an http peer URL:\n{list}"
    );

    step("TLS migration, docs step 4: Patroni paused, kbz-install --yes, Patroni resumed");
    on(first, &format!("{PATRONICTL} pause --wait"))?;
    let r = install(bin, &["--inventory", &inv, "--yes"])?;
    ensure!(
        r.code == 0,
        "the install with tls = true after the peer migration failed ({}):\n{}\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    println!("{}", r.stdout.trim_end());
    on(first, &format!("{PATRONICTL} resume --wait"))?;

    step("TLS migration: the same cluster leads with 2 streaming replicas; etcd wants a client certificate");
    eventually(60, "a leader streaming to 2 replicas", || {
        let leader = pg_leader(info)?;
        Ok(psql(
            &leader,
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        )? == "2")
    })?;
    let leader = pg_leader(info)?;
    let now = psql(&leader, "SELECT system_identifier FROM pg_control_system()")?;
    ensure!(
        now == sysid,
        "the system identifier changed over the migration: {sysid} -> {now}"
    );
    let rows = psql(&leader, &format!("SELECT count(*) FROM {CANARY}"))?;
    ensure!(
        rows == "500",
        "the migration lost rows: {CANARY} holds {rows} on {leader}"
    );
    let (_, ip) = &etcd[0];
    let bare = crate::lab::output(
        first,
        &format!(
            "ETCDCTL_API=3 etcdctl --endpoints=https://{ip}:2379 --cacert=/etc/etcd/kbz-tls/ca.crt \
             --dial-timeout=2s --command-timeout=3s endpoint health"
        ),
    )?;
    ensure!(
        !bare.status.success(),
        "etcd answered a client without a certificate after the migration"
    );
    let paused = on(first, &format!("{PATRONICTL} list"))?;
    ensure!(
        !paused.contains("Maintenance mode: on"),
        "Patroni is still paused:\n{paused}"
    );

    step("TLS migration: a re-run changes nothing");
    rerun_changes_nothing(bin, &inv, "after the TLS migration")?;
    println!(
        "migrated to TLS: system identifier {sysid} kept, 500 rows on {leader}, 2 replicas streaming, etcd refuses a client without a certificate, the re-run changed nothing"
    );
    Ok(())
}
