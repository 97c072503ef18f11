//! The kbz-failover binary as an operator runs it: `list`, `--help` with the exit codes,
//! and every refusal before a fault (unknown scenario with the nearest name, a budget that
//! does not parse, a power-cut scenario without power commands, a cluster kbz-health does
//! not call healthy): each an E-code and an exit code, with nothing injected.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn failover(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kbz-failover"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run kbz-failover")
}

/// Three hosts on loopback addresses whose SSH port is closed, with `extra` appended to
/// kbz.toml.
fn unreachable_fleet(dir: &Path, extra: &str) {
    kbz_testkit::unreachable_fleet(
        dir,
        extra,
        &[("postgres_superuser_password", "S3cr3tPgZq9xW")],
    );
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = failover(&["--help"], dir.path());
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        out.contains("EXIT CODES (shared by every kbz binary)"),
        "{out}"
    );
    // The one shared table, exactly as kbz_cli::exit holds it (and the README shows it).
    assert!(out.contains(&kbz_cli::exit::help("")), "{out}");
    assert!(out.contains("E071 lost writes, E072 write gap"), "{out}");
}

#[test]
fn list_shows_every_scenario_with_its_budget() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = failover(&["list"], dir.path());
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for name in [
        "postgres-leader-crash",
        "postgres-leader-partition",
        "postgres-switchover",
        "postgres-replica-partition",
        "etcd-leader-partition",
        "etcd-member-crash",
        "redis-master-crash",
        "redis-master-partition",
        "vip-holder-crash",
        "haproxy-down",
        "k8s-master-crash",
        "galera-node-crash",
        "rabbitmq-node-crash",
    ] {
        assert!(out.contains(name), "{name} missing:\n{out}");
    }
    // RabbitMQ: nothing confirmed may be lost, 30 s without a confirm at most.
    let mq = out
        .lines()
        .find(|l| l.contains("rabbitmq-node-crash"))
        .expect("rabbitmq line");
    assert!(mq.contains("lost <= 0, gap <= 30 s"), "{mq}");
    assert!(out.contains("lost <= 0, gap <= 35 s"), "{out}");
    assert!(out.contains("lost <= 0, gap <= 5 s"), "{out}");
    // Redis loss is judged against min-replicas-max-lag; the VIP scenarios have a VIP budget.
    assert!(
        out.contains("lost <= 0 outside +-10 s, gap <= 15 s"),
        "{out}"
    );
    assert!(out.contains("gap <= 5 s, VIP <= 5 s"), "{out}");
    // The Kubernetes API through its VIP: at most 10 s without an answer.
    let k8s = out
        .lines()
        .find(|l| l.contains("k8s-master-crash"))
        .expect("k8s line");
    assert!(
        k8s.contains("gap <= 10 s") && k8s.contains("kube-controller-manager lease"),
        "{k8s}"
    );

    // Galera: synchronous, so nothing may be lost; 20 s for HAProxy's move and the eviction.
    let galera = out
        .lines()
        .find(|l| l.contains("galera-node-crash"))
        .expect("galera line");
    assert!(
        galera.contains("lost <= 0, gap <= 20 s") && galera.contains("MariaDB VIP writes to"),
        "{galera}"
    );

    // The operator's budgets are the ones shown.
    unreachable_fleet(dir.path(), "\n[failover]\npostgres_crash_gap_secs = 20\n");
    let o = failover(
        &["list", "--json", "--inventory", "servers.tsv"],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let crash = v["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .find(|s| s["name"] == "postgres-leader-crash")
        .expect("crash scenario");
    assert_eq!(crash["budget"]["gap_secs"], 20.0);
    assert_eq!(crash["needs_power_commands"], true);
}

#[test]
fn an_unknown_scenario_suggests_the_nearest_name() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path(), "");
    let o = failover(
        &[
            "run",
            "postgres-leader-partitoin",
            "--inventory",
            "servers.tsv",
        ],
        dir.path(),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(64), "{out}");
    assert!(out.contains("E010"), "{out}");
    assert!(
        out.contains("did you mean `postgres-leader-partition`?"),
        "{out}"
    );
    let o = failover(
        &["run", "nope", "--json", "--inventory", "servers.tsv"],
        dir.path(),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["errors"][0]["code"], "E010");
}

#[test]
fn a_budget_that_cannot_parse_is_e008_with_its_line() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path(), "\n[failover]\nredis_gap_secs = \"15 s\"\n");
    let o = failover(
        &[
            "run",
            "postgres-leader-partition",
            "--yes",
            "--inventory",
            "servers.tsv",
        ],
        dir.path(),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(64), "{out}");
    assert!(out.contains("E008") && out.contains("kbz.toml:9"), "{out}");
    assert!(out.contains("redis_gap_secs"), "{out}");
}

#[test]
fn a_power_cut_without_power_commands_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path(), "");
    let o = failover(
        &[
            "run",
            "postgres-leader-crash",
            "--yes",
            "--inventory",
            "servers.tsv",
        ],
        dir.path(),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(64), "{out}");
    assert!(out.contains("E008") && out.contains("power_off"), "{out}");
}

#[test]
fn a_master_crash_on_a_fleet_without_k8s_masters_is_refused_with_e010() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(
        dir.path(),
        "k8s_api = \"127.0.1.12\"\n\n[failover]\npower_off = \"false {host}\"\npower_on = \"false {host}\"\n",
    );
    let o = failover(
        &[
            "run",
            "k8s-master-crash",
            "--yes",
            "--inventory",
            "servers.tsv",
        ],
        dir.path(),
    );
    let out = text(&o);
    // Refused from the inputs alone: nothing connected (the fleet is unreachable anyway).
    assert_eq!(o.status.code(), Some(64), "{out}");
    assert!(
        out.contains("E010") && out.contains("0 k8s-master host(s)"),
        "{out}"
    );
}

#[test]
fn an_unhealthy_cluster_is_refused_before_any_fault_and_no_secret_is_shown() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path(), "");
    let o = failover(
        &[
            "run",
            "postgres-leader-partition",
            "--yes",
            "--json",
            "--inventory",
            "servers.tsv",
        ],
        dir.path(),
    );
    let out = text(&o);
    // No host answers: kbz-health says unreachable, so nothing is injected (exit 3).
    assert_eq!(o.status.code(), Some(3), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["errors"][0]["code"], "E040", "{out}");
    let msg = v["errors"][0]["message"].as_str().unwrap_or("");
    assert!(msg.contains("injects nothing"), "{msg}");
    assert!(!out.contains("S3cr3tPgZq9xW"), "{out}");
    // Without --yes and without a terminal, it asks nothing and refuses (after the
    // health gate, which refuses first here).
    let o = failover(
        &["run", "postgres-switchover", "--inventory", "servers.tsv"],
        dir.path(),
    );
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn bad_counts_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path(), "");
    let o = failover(
        &[
            "run",
            "postgres-switchover",
            "--runs",
            "0",
            "--inventory",
            "servers.tsv",
        ],
        dir.path(),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(64), "{out}");
    assert!(out.contains("E010") && out.contains("--runs"), "{out}");
}

#[test]
fn every_kbz_failover_command_the_docs_and_the_error_catalogue_name_exists() {
    kbz_testkit::docs::check_subcommands(
        std::path::Path::new(env!("CARGO_BIN_EXE_kbz-failover")),
        "kbz-failover",
    );
}

#[test]
fn a_redis_only_fleet_needs_no_postgresql_vip_and_a_postgresql_scenario_is_e008() {
    let dir = tempfile::tempdir().expect("tmp");
    unreachable_fleet(dir.path(), "");
    let inv: String = (1..=3)
        .map(|i| format!("n{i}\t127.0.0.{i}\tlb,redis\troot\t1\n"))
        .collect();
    std::fs::write(dir.path().join("servers.tsv"), inv).expect("inventory");
    std::fs::write(
        dir.path().join("kbz.toml"),
        "[cluster]\nname = \"loop\"\n\n[vips]\nredis = \"127.0.1.11\"\n",
    )
    .expect("config");
    let run = |scenario: &str| {
        failover(
            &["run", scenario, "--yes", "--inventory", "servers.tsv"],
            dir.path(),
        )
    };
    // PostgreSQL: refused before anything connects, naming the missing VIP.
    let o = run("postgres-switchover");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(64), "{out}");
    assert!(
        out.contains("E008") && out.contains("[vips] postgres"),
        "{out}"
    );
    // Redis: no PostgreSQL needed; it gets as far as the health gate (no host answers).
    let o = run("redis-master-partition");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("E040") && !out.contains("[vips] postgres"),
        "{out}"
    );
}
