//! e2e: RabbitMQ on the lab (module 7), after the install, once the lab has the `rabbitmq`
//! role on three hosts and `[vips] rabbitmq`. Every node sees every node running in
//! `cluster_status`; through the VIP, as the application user from the secrets file, a
//! queue declared without arguments is a quorum queue (the vhost's default queue type),
//! messages published with publisher confirms are all consumed; then a power cut of the
//! queue's leader (`lab kill`), more messages published with confirms through the VIP while
//! it is down, the node started again (`lab start`) rejoins (by itself, or joined by the
//! re-run of kbz-install that follows), every confirmed message is consumed (0 lost), and a
//! further re-run changes nothing.

use anyhow::{bail, ensure, Context as _, Result};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{changed, cluster_changes, eventually, install, json, kbz_install, on, secret, step};
use crate::lab::{self, LabInfo};

/// Messages published before the power cut, and while the node is down.
const BEFORE: usize = 300;
const DURING: usize = 300;

/// `cluster_status` of every member: true when each sees every member running and no
/// partition.
fn all_running(members: &[String], nodes: &[String]) -> Result<bool> {
    for m in members {
        let out = on(
            m,
            "timeout 60 rabbitmqctl -q cluster_status --formatter json 2>&1 || true",
        )?;
        let s = match kbz_rabbitmq::observe::parse_cluster_status(&out) {
            Ok(s) => s,
            Err(_) => return Ok(false),
        };
        if !s.partitioned.is_empty()
            || !kbz_rabbitmq::observe::missing(nodes, &s.running_nodes).is_empty()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `name` and one more column of the vhost's queues (`list_queues` as JSON), from `host`.
fn queue_column(host: &str, vhost: &str, column: &str) -> Result<Vec<(String, String)>> {
    let out = on(
        host,
        &format!(
            "timeout 60 rabbitmqctl -q list_queues -p {} name {column} --formatter json",
            kbz_core::shell::quote(vhost)
        ),
    )?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(out.trim())
        .with_context(|| format!("list_queues on {host} is not JSON: {out}"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("name"), s(column))
        })
        .collect())
}

/// Percent-encodes one URI component (user, password, vhost).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One AMQP channel through the VIP with publisher confirms on; retried while HAProxy
/// still sends to a node that went down.
async fn channel(uri: &str) -> Result<(Connection, Channel)> {
    let start = Instant::now();
    loop {
        let attempt = async {
            let conn = Connection::connect(uri, ConnectionProperties::default()).await?;
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>((conn, ch))
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) if start.elapsed() > Duration::from_secs(90) => {
                bail!("no AMQP channel through the VIP in 90 s: {e}")
            }
            Err(_) if start.elapsed() > Duration::from_secs(90) => {
                bail!("no AMQP channel through the VIP in 90 s: connect timed out")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Publishes `ids` with publisher confirms, reconnecting and resending a message whose
/// confirm did not come (a nack, an error, 30 s without an answer). Returns how many
/// resends there were; every id is confirmed when it returns.
async fn publish(uri: &str, queue: &str, ids: std::ops::Range<usize>) -> Result<usize> {
    let (mut conn, mut ch) = channel(uri).await?;
    let mut resends = 0;
    for i in ids {
        let mut tries = 0;
        loop {
            let body = format!("m{i}");
            let sent = async {
                let c = ch
                    .basic_publish(
                        "",
                        queue,
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?
                    .await?;
                Ok::<_, lapin::Error>(c.is_ack())
            };
            match tokio::time::timeout(Duration::from_secs(30), sent).await {
                Ok(Ok(true)) => break,
                other => {
                    tries += 1;
                    resends += 1;
                    ensure!(tries < 20, "message {i} never confirmed: {other:?}");
                    let _ = conn.close(200, "retry").await;
                    (conn, ch) = channel(uri).await?;
                }
            }
        }
    }
    let _ = conn.close(200, "bye").await;
    Ok(resends)
}

/// Consumes every message of `queue` through the VIP; their ids (duplicates counted once).
async fn consume(uri: &str, queue: &str) -> Result<(BTreeSet<usize>, usize)> {
    let (conn, ch) = channel(uri).await?;
    let mut got = BTreeSet::new();
    let mut n = 0;
    while let Some(m) = ch.basic_get(queue, BasicGetOptions::default()).await? {
        let body = String::from_utf8_lossy(&m.delivery.data).to_string();
        let id = body
            .strip_prefix('m')
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("an unexpected message in {queue}: {body}"))?;
        got.insert(id);
        n += 1;
        m.delivery.ack(BasicAckOptions::default()).await?;
    }
    let _ = conn.close(200, "bye").await;
    Ok((got, n))
}

fn missing(got: &BTreeSet<usize>, ids: std::ops::Range<usize>) -> Vec<usize> {
    ids.filter(|i| !got.contains(i)).collect()
}

pub fn scenario(info: &LabInfo) -> Result<()> {
    let inv = kbz_core::Inventory::load(&info.servers_tsv)
        .map_err(|d| anyhow::anyhow!("{d:?}"))
        .context("the lab inventory")?;
    let hosts: Vec<kbz_core::Host> = inv
        .with_role(kbz_core::Role::Rabbitmq)
        .into_iter()
        .cloned()
        .collect();
    ensure!(
        hosts.len() >= 3,
        "the lab has {} host(s) with the rabbitmq role; add `rabbitmq` to three hosts' roles in the lab inventory",
        hosts.len()
    );
    let layout = kbz_rabbitmq::Layout::debian();
    let members: Vec<String> = hosts.iter().map(|h| h.hostname.clone()).collect();
    let nodes: Vec<String> = hosts.iter().map(|h| layout.node(h)).collect();
    let cfg = kbz_core::Config::load(&info.config)
        .map_err(|d| anyhow::anyhow!("{d:?}"))
        .context("the lab's kbz.toml")?;
    let vip = cfg
        .vips
        .get("rabbitmq")
        .copied()
        .context("the lab's kbz.toml has no [vips] rabbitmq")?;
    let (user, vhost) = (cfg.rabbitmq.app_user.clone(), cfg.rabbitmq.vhost.clone());
    let password = secret(info, kbz_rabbitmq::SECRET_APP)?;
    let uri = format!(
        "amqp://{}:{}@{}/{}",
        pct(&user),
        pct(&password),
        kbz_core::net::host_port(vip, 5672),
        pct(&vhost)
    );
    let bin = kbz_install()?;
    let inv_path = info.servers_tsv.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    step("rabbitmq: every node running in cluster_status on every node");
    eventually(180, "every RabbitMQ node running on every node", || {
        all_running(&members, &nodes)
    })?;

    step("rabbitmq: a queue declared without arguments is a quorum queue; publish with confirms through the VIP, consume");
    let queue = format!("kbz-e2e-{}", std::process::id());
    rt.block_on(async {
        let (conn, ch) = channel(&uri).await?;
        ch.queue_declare(
            &queue,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        let _ = conn.close(200, "bye").await;
        anyhow::Ok(())
    })?;
    let types = queue_column(&members[0], &vhost, "type")?;
    ensure!(
        types.contains(&(queue.clone(), "quorum".to_string())),
        "{queue} declared without arguments in vhost {vhost} is not a quorum queue: {types:?}"
    );
    let t = Instant::now();
    let resends = rt.block_on(publish(&uri, &queue, 0..BEFORE))?;
    println!(
        "rabbitmq: {BEFORE} messages confirmed through {vip} in {:.1}s ({resends} resent)",
        t.elapsed().as_secs_f64()
    );
    let (got, n) = rt.block_on(consume(&uri, &queue))?;
    let lost = missing(&got, 0..BEFORE);
    ensure!(lost.is_empty(), "confirmed messages not consumed: {lost:?}");
    println!("rabbitmq: {n} consumed through {vip}");

    step("rabbitmq: power cut of the queue's leader; publish with confirms through the VIP while it is down");
    let leaders = queue_column(&members[0], &vhost, "leader")?;
    let leader = leaders
        .iter()
        .find(|(n, _)| *n == queue)
        .map(|(_, l)| l.clone())
        .with_context(|| format!("no leader of {queue}: {leaders:?}"))?;
    let victim = hosts
        .iter()
        .find(|h| layout.node(h) == leader)
        .map(|h| h.hostname.clone())
        .with_context(|| format!("the leader {leader} is no lab host"))?;
    lab::kill(&victim)?;
    let t = Instant::now();
    let resends = rt.block_on(publish(&uri, &queue, BEFORE..BEFORE + DURING))?;
    println!(
        "rabbitmq: {victim} ({leader}) powered off; {DURING} messages confirmed through {vip} in {:.1}s ({resends} resent)",
        t.elapsed().as_secs_f64()
    );

    step("rabbitmq: the node starts again and rejoins");
    lab::start(&victim)?;
    let t = Instant::now();
    let by_itself = eventually(
        180,
        "every RabbitMQ node running after the power cut",
        || all_running(&members, &nodes),
    )
    .is_ok();
    if by_itself {
        println!(
            "rabbitmq: {victim} rejoined by itself {:.1}s after its start",
            t.elapsed().as_secs_f64()
        );
    } else {
        println!("rabbitmq: {victim} did not rejoin by itself in 180 s");
    }
    // The power cut also hit whatever else runs on the host: one re-run heals it all (and
    // joins the node when it did not rejoin), the last step requires 0 changed after it.
    let r = install(&bin, &["--inventory", &inv_path, "--yes", "--json"])?;
    ensure!(
        r.code == 0,
        "the re-run after the power cut failed:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    let report = json(&r)?;
    println!(
        "rabbitmq: the re-run after the power cut changed {} operations, {} cluster changes",
        changed(&report)?,
        cluster_changes(&report)?
    );
    eventually(180, "every RabbitMQ node running after the re-run", || {
        all_running(&members, &nodes)
    })?;

    step("rabbitmq: every confirmed message is consumed (0 lost)");
    let (got, n) = rt.block_on(consume(&uri, &queue))?;
    let lost = missing(&got, BEFORE..BEFORE + DURING);
    ensure!(
        lost.is_empty(),
        "{} confirmed message(s) lost: {lost:?}",
        lost.len()
    );
    println!(
        "rabbitmq: {n} consumed ({} distinct of {DURING} confirmed), 0 lost",
        got.len()
    );
    rt.block_on(async {
        let (conn, ch) = channel(&uri).await?;
        ch.queue_delete(&queue, QueueDeleteOptions::default())
            .await?;
        let _ = conn.close(200, "bye").await;
        anyhow::Ok(())
    })?;

    step("rabbitmq: a further re-run changes nothing");
    let r = install(&bin, &["--inventory", &inv_path, "--yes", "--json"])?;
    ensure!(r.code == 0, "re-run failed:\n{}\n{}", r.stdout, r.stderr);
    let report = json(&r)?;
    let (ops, cluster) = (changed(&report)?, cluster_changes(&report)?);
    ensure!(
        ops == 0 && cluster == 0,
        "the re-run after the power cut changed {ops} operations and made {cluster} cluster changes:\n{}",
        r.stdout
    );
    Ok(())
}
