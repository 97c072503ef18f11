//! Patroni around a restore of etcd, on strict fake hosts: what runs before and after, in
//! which order, and what an operator's own pause changes (the hook then leaves it paused).

use kbz_core::backup::RestoreHook;
use kbz_core::component::HostExec;
use kbz_postgres::dcs_restore::{self, PatroniAroundEtcd};
use kbz_testkit::{output, FakeHost};
use std::sync::Arc;

/// Three postgres members on fake hosts; `/cluster` names kbz-db2 as the running leader.
fn members(pause_answer: (&str, i32)) -> (kbz_core::Context, Vec<Arc<FakeHost>>, Vec<HostExec>) {
    let ctx = kbz_testkit::example_context(Vec::<String>::new());
    let hosts: Vec<kbz_core::Host> = ctx
        .inventory
        .hosts
        .iter()
        .filter(|h| PatroniAroundEtcd.applies_to(h))
        .cloned()
        .collect();
    assert_eq!(hosts.len(), 3);
    let cluster = format!(
        r#"{{"members": [{{"name": "{a}", "role": "replica", "state": "streaming"}}, {{"name": "{b}", "role": "leader", "state": "running"}}, {{"name": "{c}", "role": "sync_standby", "state": "streaming"}}]}}"#,
        a = hosts[0].hostname,
        b = hosts[1].hostname,
        c = hosts[2].hostname
    );
    let fakes: Vec<Arc<FakeHost>> = hosts
        .iter()
        .map(|h| {
            let f = Arc::new(FakeHost::empty(&h.hostname));
            f.script("pause --wait", output(pause_answer.0, pause_answer.1));
            f.script("edit-config --force -s pause=true", output("", 0));
            f.script("systemctl restart patroni", output("", 0));
            f.script("/cluster", output(&cluster, 0));
            f.script("resume --wait", output("", 0));
            f
        })
        .collect();
    let execs = hosts
        .iter()
        .zip(&fakes)
        .map(|(h, f)| HostExec {
            host: h.clone(),
            exec: f.clone(),
        })
        .collect();
    (ctx, fakes, execs)
}

#[tokio::test]
async fn patroni_is_paused_restarted_and_resumed_around_an_etcd_restore() {
    let (ctx, fakes, execs) = members(("paused", 0));
    let h = PatroniAroundEtcd;
    assert_eq!(h.around(), "etcd");
    let scope = ctx.config.cluster.slug();
    assert_eq!(
        h.stale_keys(&ctx),
        dcs_restore::STALE
            .iter()
            .map(|k| format!("/service/{scope}/{k}"))
            .collect::<Vec<_>>()
    );
    assert!(!h
        .stale_keys(&ctx)
        .iter()
        .any(|k| k.ends_with("/config") || k.ends_with("/initialize")));

    let state = h.before(&ctx, &execs).await.expect("before");
    assert!(state.undo && state.note.is_none(), "{state:?}");
    assert!(state
        .if_failed
        .as_deref()
        .is_some_and(|s| s.contains("resume")));
    // One member pauses the whole cluster.
    assert_eq!(fakes[0].ran().len(), 1);
    assert!(fakes[1].ran().is_empty());

    let done = h.after(&ctx, &execs, &state).await.expect("after");
    assert!(done.contains("resumed"), "{done}");
    assert!(done.contains(&execs[1].host.hostname), "{done}");
    // On the first member: pause written into the restored etcd, then the restart; the
    // resume only after the leader was seen.
    let ran = fakes[0].ran();
    let at = |p: &str| ran.iter().position(|s| s.contains(p)).unwrap_or(usize::MAX);
    assert!(
        at("edit-config") < at("systemctl restart patroni"),
        "{ran:#?}"
    );
    assert!(at("/cluster") < at("resume --wait"), "{ran:#?}");
    for f in &fakes {
        assert_eq!(
            f.ran()
                .iter()
                .filter(|s| s.contains("systemctl restart patroni"))
                .count(),
            1,
            "{}",
            f.ran().join("\n")
        );
    }
    kbz_testkit::assert_valid_sh(ran);
}

#[tokio::test]
async fn a_cluster_the_operator_paused_stays_paused() {
    // pause_script prints `already` when patronictl says "Cluster is already paused".
    let (ctx, fakes, execs) = members(("already", 0));
    let h = PatroniAroundEtcd;
    let state = h.before(&ctx, &execs).await.expect("before");
    assert!(!state.undo && state.if_failed.is_none(), "{state:?}");
    let done = h.after(&ctx, &execs, &state).await.expect("after");
    assert!(done.contains("left paused"), "{done}");
    assert!(fakes
        .iter()
        .all(|f| !f.ran().iter().any(|s| s.contains("resume"))));
}

#[tokio::test]
async fn etcd_down_before_the_restore_is_noted_and_patroni_still_resumes() {
    let (ctx, fakes, execs) = members(("Error: Can not find accessible cluster member", 1));
    let h = PatroniAroundEtcd;
    let state = h.before(&ctx, &execs).await.expect("before");
    assert!(state.undo, "{state:?}");
    assert!(
        state
            .note
            .as_deref()
            .is_some_and(|n| n.contains("could not be paused")),
        "{state:?}"
    );
    // Every member was asked before giving up on the pause.
    assert!(fakes.iter().all(|f| f.ran().len() == 1));
    let done = h.after(&ctx, &execs, &state).await.expect("after");
    assert!(
        done.contains("resumed") && done.contains("could not be paused"),
        "{done}"
    );
}
