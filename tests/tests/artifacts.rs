//! Pinned artifacts through the engine on fake hosts: the controller fetches each pin once
//! into a real `DownloadCache` (a `file://` source in a temporary directory), the engine
//! pushes it only where the host's sha256 differs, a wrong pin is E030 before any host has
//! it, a later failure rolls an upgrade back to the previous bytes, uninstall removes it, and
//! a dry-run plans the fetch without fetching.

use async_trait::async_trait;
use kbz_core::artifact::ArtifactPin;
use kbz_core::cache::{Cache, CacheError};
use kbz_core::engine::Mode;
use kbz_core::resource::Op;
use kbz_core::{
    Component, ComponentError, Config, Context, Engine, Host, Inventory, Resource, Role,
    RunOptions, Secrets,
};
use kbz_errors::{Code, HasCode};
use kbz_exec::DownloadCache;
use kbz_testkit::FakeConnector;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const BIN: &str = "/usr/local/bin/tool";

/// A component that only declares a pinned binary and a service restarted when it changes.
#[derive(Debug)]
struct Tool {
    pin: Mutex<ArtifactPin>,
}

impl Component for Tool {
    fn name(&self) -> &'static str {
        "tool"
    }
    fn module(&self) -> u8 {
        1
    }
    fn desired(&self, ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let pin = ctx.config.artifact(&self.pin.lock().expect("pin"));
        Ok(vec![
            Resource::artifact(BIN, &pin, 0o755),
            Resource::service("tool", &[BIN]),
        ])
    }
    fn uninstall(&self, ctx: &Context, _host: &Host) -> Result<Vec<Resource>, ComponentError> {
        let pin = ctx.config.artifact(&self.pin.lock().expect("pin"));
        Ok(vec![
            Resource::stopped_service("tool"),
            Resource::absent_artifact(BIN, &pin),
        ])
    }
}

/// Counts fetches through the real cache.
#[derive(Debug)]
struct Counting {
    inner: DownloadCache,
    fetches: AtomicUsize,
}

#[async_trait]
impl Cache for Counting {
    async fn fetch(&self, pin: &ArtifactPin) -> Result<PathBuf, CacheError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(pin).await
    }
}

struct Setup {
    engine: Engine,
    fleet: Arc<FakeConnector>,
    cache: Arc<Counting>,
    tool: Arc<Tool>,
    src: tempfile::TempDir,
    _cache_dir: tempfile::TempDir,
}

fn inventory() -> Inventory {
    Inventory {
        path: "servers.tsv".into(),
        hosts: (1..=3)
            .map(|i| {
                Host::new(
                    &format!("node{i}"),
                    format!("192.0.2.{}", 10 + i).parse().expect("ip"),
                    &[Role::Etcd],
                )
            })
            .collect(),
    }
}

/// Writes `tool-VERSION` with `body` into the source directory and returns its pin.
fn publish(src: &tempfile::TempDir, version: &str, body: &[u8]) -> ArtifactPin {
    std::fs::write(src.path().join(format!("tool-{version}")), body).expect("write artifact");
    ArtifactPin::new(
        "tool",
        version,
        &kbz_core::shell::sha256_hex(body),
        &format!("file://{}/tool-{{version}}", src.path().display()),
    )
}

fn setup(config: Config) -> Setup {
    let src = tempfile::tempdir().expect("src dir");
    let cache_dir = tempfile::tempdir().expect("cache dir");
    let pin = publish(&src, "1.0", b"#!/bin/sh\necho tool 1.0\n");
    let tool = Arc::new(Tool {
        pin: Mutex::new(pin),
    });
    let cache = Arc::new(Counting {
        inner: DownloadCache::new(cache_dir.path()).expect("cache"),
        fetches: AtomicUsize::new(0),
    });
    let ctx = Context::new(inventory(), config, Secrets::in_memory());
    let fleet = Arc::new(FakeConnector::debian_fleet(&ctx.inventory.hosts));
    let engine = Engine::new(ctx, vec![tool.clone()], fleet.clone()).with_artifacts(cache.clone());
    Setup {
        engine,
        fleet,
        cache,
        tool,
        src,
        _cache_dir: cache_dir,
    }
}

fn pushes(fleet: &FakeConnector) -> usize {
    fleet
        .hosts()
        .map(|(_, h)| {
            h.applied()
                .iter()
                .filter(|op| matches!(op, Op::WriteFile { path, .. } if path == BIN))
                .count()
        })
        .sum()
}

#[tokio::test]
async fn first_run_fetches_once_and_pushes_rerun_changes_nothing() {
    let s = setup(Config::default());
    let first = s
        .engine
        .run(&RunOptions::default())
        .await
        .expect("first run");
    assert!(first.changed() > 0);
    assert_eq!(
        s.cache.fetches.load(Ordering::SeqCst),
        1,
        "one fetch for three hosts"
    );
    assert_eq!(pushes(&s.fleet), 3);
    for (name, h) in s.fleet.hosts() {
        let f = &h.state().files[BIN];
        assert_eq!(f.content, b"#!/bin/sh\necho tool 1.0\n", "{name}");
        assert_eq!(f.mode, 0o755);
        assert!(h.state().services["tool"].active);
    }
    let restarts: Vec<u64> = s.fleet.hosts().map(|(_, h)| h.restarts("tool")).collect();
    let second = s
        .engine
        .run(&RunOptions::default())
        .await
        .expect("second run");
    assert_eq!(second.changed(), 0, "{}", second.plan.render());
    assert_eq!(
        pushes(&s.fleet),
        3,
        "a converged re-run transferred the artifact again"
    );
    assert_eq!(s.cache.fetches.load(Ordering::SeqCst), 1);
    let after: Vec<u64> = s.fleet.hosts().map(|(_, h)| h.restarts("tool")).collect();
    assert_eq!(restarts, after, "a converged re-run restarted the service");
}

#[tokio::test]
async fn a_pin_that_does_not_match_its_bytes_is_e030_and_nothing_is_pushed() {
    let s = setup(Config::default());
    {
        let mut pin = s.tool.pin.lock().expect("pin");
        pin.sha256 = "0".repeat(64);
    }
    let err = s
        .engine
        .run(&RunOptions::default())
        .await
        .expect_err("must fail");
    assert_eq!(err.code(), Code::E030, "{err}");
    let text = err.to_string();
    let actual = kbz_core::shell::sha256_hex(b"#!/bin/sh\necho tool 1.0\n");
    assert!(
        text.contains(&"0".repeat(64)) && text.contains(&actual),
        "{text}"
    );
    for (name, h) in s.fleet.hosts() {
        assert!(
            !h.state().files.contains_key(BIN),
            "{name} got unverified bytes"
        );
    }
}

#[tokio::test]
async fn an_upgrade_restarts_and_a_failed_upgrade_restores_the_previous_bytes() {
    let s = setup(Config::default());
    s.engine
        .run(&RunOptions::default())
        .await
        .expect("install 1.0");
    let v2 = publish(&s.src, "2.0", b"#!/bin/sh\necho tool 2.0\n");
    *s.tool.pin.lock().expect("pin") = v2;

    // The restart into the new binary (third operation: keep, push, restart) fails on
    // every host: each must get 1.0 back.
    let before: Vec<u64> = s.fleet.hosts().map(|(_, h)| h.restarts("tool")).collect();
    for (_, h) in s.fleet.hosts() {
        h.fail_nth_operation(3);
    }
    let err = s
        .engine
        .run(&RunOptions::default())
        .await
        .expect_err("restart fails");
    assert_eq!(err.code(), Code::E024, "{err}");
    for (name, h) in s.fleet.hosts() {
        let st = h.state();
        assert_eq!(
            st.files[BIN].content, b"#!/bin/sh\necho tool 1.0\n",
            "{name}"
        );
        h.clear_failure();
    }

    let up = s.engine.run(&RunOptions::default()).await.expect("upgrade");
    assert!(up.changed() > 0);
    let after: Vec<u64> = s.fleet.hosts().map(|(_, h)| h.restarts("tool")).collect();
    for (name, h) in s.fleet.hosts() {
        assert_eq!(
            h.state().files[BIN].content,
            b"#!/bin/sh\necho tool 2.0\n",
            "{name}"
        );
    }
    assert!(
        after.iter().zip(&before).all(|(a, b)| a > b),
        "the new binary must be restarted into: {before:?} -> {after:?}"
    );
}

#[tokio::test]
async fn kbz_toml_overrides_the_pin_and_uninstall_removes_the_file() {
    let s0 = tempfile::tempdir().expect("dir");
    let v3 = publish(&s0, "3.0", b"three");
    let text = format!(
        "[artifacts.tool]\nversion = \"3.0\"\nsha256 = \"{}\"\nsource = \"file://{}/tool-{{version}}\"\n",
        v3.sha256,
        s0.path().display()
    );
    let cfg = Config::parse("kbz.toml", &text).expect("config");
    let s = setup(cfg);
    s.engine.run(&RunOptions::default()).await.expect("install");
    for (_, h) in s.fleet.hosts() {
        assert_eq!(h.state().files[BIN].content, b"three");
    }
    let un = RunOptions {
        mode: Mode::Uninstall,
        ..RunOptions::default()
    };
    let r = s.engine.run(&un).await.expect("uninstall");
    assert!(r.changed() > 0);
    for (name, h) in s.fleet.hosts() {
        let st = h.state();
        assert!(!st.files.contains_key(BIN), "{name}");
        assert!(!st.files.contains_key(&format!("{BIN}.kbz-prev")), "{name}");
    }
    let again = s.engine.run(&un).await.expect("uninstall again");
    assert_eq!(again.changed(), 0);
}

#[tokio::test]
async fn dry_run_plans_the_fetch_without_fetching_even_offline() {
    // No download cache at all, and hosts unreachable: the plan still names the fetch.
    let src = tempfile::tempdir().expect("dir");
    let pin = publish(&src, "1.0", b"x");
    let ctx = Context::new(inventory(), Config::default(), Secrets::in_memory());
    let mut fleet = FakeConnector::debian_fleet(&ctx.inventory.hosts);
    fleet.set_unreachable("node2");
    let fleet = Arc::new(fleet);
    let tool = Arc::new(Tool {
        pin: Mutex::new(pin),
    });
    let engine = Engine::new(ctx, vec![tool], fleet.clone());
    let opts = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    let r = engine.run(&opts).await.expect("dry run");
    let plan = r.plan.render();
    assert!(
        plan.contains("fetch tool 1.0 (sha256 ") && plan.contains("push it to /usr/local/bin/tool"),
        "{plan}"
    );
    assert!(
        plan.contains("node2 · module 1 tool (not reached"),
        "{plan}"
    );
    for (_, h) in fleet.hosts() {
        assert!(h.applied().is_empty());
    }
    // A real run without a cache refuses with E028 instead of guessing.
    let fleet2 = Arc::new(FakeConnector::debian_fleet(&inventory().hosts));
    let tool = Arc::new(Tool {
        pin: Mutex::new(publish(&src, "1.0", b"x")),
    });
    let engine = Engine::new(
        Context::new(inventory(), Config::default(), Secrets::in_memory()),
        vec![tool],
        fleet2,
    );
    let err = engine
        .run(&RunOptions::default())
        .await
        .expect_err("no cache");
    assert_eq!(err.code(), Code::E028, "{err}");
}
