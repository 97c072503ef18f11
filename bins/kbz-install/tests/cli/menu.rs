//! `kbz-install menu` in a real terminal: tmux (on a private socket, killed by a guard) runs
//! the menu offline on the bundled example; the test types keys and reads the screen with
//! `capture-pane`, snapshotting each screen (counts that move with the components filtered).

use kbz_testkit::tmux::Tmux;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The menu in an 80x24 terminal of this test alone.
fn menu(argv: &[&str], dir: &Path) -> Tmux {
    Tmux::start(argv, dir, 80, 24)
}

fn snapshot(name: &str, screen: &str) {
    insta::with_settings!({
        filters => vec![
            // Operation counts and page lengths move whenever a component changes.
            (r"\(\d+ ops\) *│", "([N] ops) │"),
            (r"─* \d+-\d+ of \d+ ┘", "─ [A]-[B] of [N] ┘"),
            (r"\d+ operation\(s\)", "[N] operation(s)"),
        ],
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!(name, screen);
    });
}

#[test]
fn the_menu_runs_in_a_real_terminal_offline_on_the_bundled_example() {
    let dir = tempfile::tempdir().expect("tmp");
    let bin = env!("CARGO_BIN_EXE_kbz-install");
    let t = menu(&[bin, "menu", "--offline"], dir.path());

    let first = t.wait_for("offline: no host is contacted");
    for want in ["1 base", "kubernetes", "lb1", "k8s-w3", "p plan", "? help"] {
        assert!(first.contains(want), "`{want}` missing:\n{first}");
    }
    snapshot("menu_first_screen", &first);
    // The README shows this screen: its frame and actions as they are today.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    for line in first.lines().filter(|l| !l.contains(" ops)")) {
        assert!(
            readme.contains(line),
            "README.md's capture of the menu lacks this line of the first screen:\n{line}"
        );
    }

    // Navigate to haproxy and select it and keepalived.
    t.keys(&["Down", "Space", "j", "Space"]);
    let s = t.wait_for("[x]  3 haproxy");
    assert!(s.contains("[x]  2 keepalived"), "{s}");
    assert!(s.contains("acts on: keepalived, haproxy"), "{s}");

    // The plan of the selection, scrolled.
    t.keys(&["p"]);
    let plan = t.wait_for("plan (dry-run): keepalived, haproxy");
    assert!(plan.contains("== lb1 · module 2 keepalived"), "{plan}");
    snapshot("menu_plan", &plan);
    t.keys(&["PageDown", "Down", "Down"]);
    let scrolled = t.wait_for(" 18-32 of ");
    assert_ne!(scrolled, plan);
    snapshot("menu_plan_scrolled", &scrolled);
    t.keys(&["End"]);
    let end = t.wait_for("operations would change on");
    assert!(end.contains("haproxy"), "{end}");
    t.keys(&["Escape"]);
    t.wait_for("acts on: keepalived, haproxy");

    // The keyboard help, and back.
    t.keys(&["?"]);
    let help = t.wait_for("keys (Esc closes)");
    snapshot("menu_help", &help);
    t.keys(&["Escape"]);
    t.wait_for("acts on: keepalived, haproxy");

    // Back up and drills ask first; declined, or offline, nothing runs.
    t.keys(&["b"]);
    t.wait_for("Back up every component now?");
    t.keys(&["n"]);
    t.wait_for("backup cancelled: nothing was done");
    t.keys(&["d"]);
    t.wait_for("Run a restore drill of every component?");
    t.keys(&["y"]);
    t.wait_for("kbz-backup drill: offline, no host is contacted: nothing was done");

    // Uninstall without the cluster name typed does not proceed.
    t.keys(&["u"]);
    t.wait_for("Type the cluster name `example`");
    t.text("exampel");
    t.keys(&["Enter"]);
    let refused = t.wait_for("That is not the cluster name: nothing was changed.");
    assert!(!refused.contains("uninstalling"), "{refused}");
    snapshot("menu_uninstall_wrong_name", &refused);
    t.keys(&["Enter"]);
    let s = t.wait_for("That is not the cluster name");
    assert!(
        !s.contains("uninstalling"),
        "an empty name must not uninstall:\n{s}"
    );
    t.keys(&["Escape"]);
    let cancelled = t.wait_for("uninstall cancelled: nothing was changed");
    assert!(!cancelled.contains("confirm uninstall"), "{cancelled}");
    // Even with the name typed, --offline contacts no host.
    t.keys(&["u"]);
    t.wait_for("Type the cluster name `example`");
    t.text("example");
    t.keys(&["Enter"]);
    t.wait_for("uninstall: offline, no host is contacted: nothing was changed");

    // Explain a code.
    t.keys(&["e"]);
    t.wait_for("The code to explain");
    t.text("E014");
    t.keys(&["Enter"]);
    t.wait_for("explain E014");

    t.keys(&["Escape", "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.alive() {
        assert!(Instant::now() < deadline, "q did not quit:\n{}", t.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "the offline menu must write nothing"
    );
}

#[test]
fn the_menu_refuses_without_a_terminal() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = Command::new(env!("CARGO_BIN_EXE_kbz-install"))
        .args(["menu"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("E010") && err.contains("needs a terminal"),
        "{err}"
    );
}
