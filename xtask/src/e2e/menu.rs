//! e2e: `kbz-install menu` against the lab's hosts, in a real terminal (tmux): the probe
//! shows the converged modules; Redis is uninstalled (the cluster name typed) and installed
//! again (after `y`) from the menu, each checked on the hosts; `b` backs up every component
//! and `d` drills, both through kbz-backup; `q` quits.

use anyhow::{anyhow, ensure, Result};
use kbz_testkit::tmux::Tmux;
use std::time::Duration;

use super::{built, on, step};
use crate::lab::LabInfo;

fn wait(t: &Tmux, want: &str, secs: u64) -> Result<String> {
    t.try_wait_for(want, Duration::from_secs(secs))
        .map_err(|e| anyhow!("{e}"))
}

/// The module row of `name` on the main screen: the modules pane's part of the line
/// (`│[ ]  6 redis       3 converged   │`), not the hosts pane beside it.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen
        .lines()
        .map(|l| l.split("││").next().unwrap_or(l))
        .find(|l| l.contains("[") && l.split_whitespace().any(|w| w == name))
}

/// Waits for the probe's status line and returns the screen.
fn probed(t: &Tmux) -> Result<String> {
    wait(t, "probed:", 180)
}

/// The menu scenario (see the module docs).
pub fn scenario(info: &LabInfo, names: &[&str]) -> Result<()> {
    step("kbz-install menu against the lab in tmux: uninstall and install Redis, back up, drill");
    let bin = built("kbz-install")?;
    // kbz-backup must sit next to kbz-install: the menu runs it from there.
    built("kbz-backup")?;
    let (inv, cfg) = (
        info.servers_tsv.display().to_string(),
        info.config.display().to_string(),
    );
    let t = Tmux::start(
        &[
            &bin.display().to_string(),
            "menu",
            "--inventory",
            &inv,
            "--config",
            &cfg,
        ],
        &info.dir,
        100,
        40,
    );
    let s = probed(&t)?;
    for m in ["base", "etcd", "postgres", "redis"] {
        let r = row(&s, m).ok_or_else(|| anyhow!("no row for {m}:\n{s}"))?;
        ensure!(
            r.contains("converged"),
            "{m} is not converged on the lab:\n{s}"
        );
    }
    let mut moved = 0;
    while !t.screen().contains("acts on: redis") {
        ensure!(
            moved < 12,
            "the cursor never reached redis:\n{}",
            t.screen()
        );
        t.keys(&["Down"]);
        moved += 1;
    }

    // Uninstall Redis: only with the cluster name typed.
    t.keys(&["u"]);
    wait(&t, "Type the cluster name", 10)?;
    t.text("kbzlab");
    t.keys(&["Enter"]);
    let s = wait(&t, "uninstall done", 300)?;
    println!(
        "{}",
        s.lines()
            .filter(|l| l.contains("done"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for h in names {
        let a = on(h, "systemctl is-active redis-server || true")?;
        ensure!(
            a != "active",
            "{h}: redis-server still active after the menu's uninstall"
        );
    }
    t.keys(&["Enter"]);
    let s = probed(&t)?;
    let r = row(&s, "redis").ok_or_else(|| anyhow!("no redis row:\n{s}"))?;
    ensure!(
        r.contains("not installed"),
        "redis after the uninstall: {r}"
    );

    // Install it again: `y` applies.
    t.keys(&["i"]);
    wait(&t, "Apply? y", 10)?;
    t.keys(&["y"]);
    let s = wait(&t, "install done", 600)?;
    println!(
        "{}",
        s.lines()
            .filter(|l| l.contains("done"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for h in names {
        let a = on(h, "systemctl is-active redis-server redis-sentinel")?;
        ensure!(
            a.lines().all(|l| l == "active"),
            "{h}: Redis not active after the menu's install: {a}"
        );
    }
    t.keys(&["Enter"]);
    let s = probed(&t)?;
    let r = row(&s, "redis").ok_or_else(|| anyhow!("no redis row:\n{s}"))?;
    ensure!(r.contains("converged"), "redis after the install: {r}");

    // Back up now and drill, through kbz-backup.
    t.keys(&["b"]);
    wait(&t, "Back up every component now?", 10)?;
    t.keys(&["y"]);
    let s = wait(&t, "kbz-backup run exited with", 300)?;
    ensure!(
        s.contains("kbz-backup run exited with 0"),
        "the menu's backup failed:\n{s}"
    );
    t.keys(&["Escape"]);
    t.keys(&["d"]);
    wait(&t, "Run a restore drill", 10)?;
    t.keys(&["y"]);
    let s = wait(&t, "kbz-backup drill exited with", 300)?;
    ensure!(
        s.contains("kbz-backup drill exited with 0"),
        "the menu's drill failed:\n{s}"
    );
    t.keys(&["Escape", "q"]);
    for _ in 0..50 {
        if !t.alive() {
            println!("menu: uninstall, install, backup and drill done; q quit");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(anyhow!("q did not quit the menu:\n{}", t.screen()))
}
