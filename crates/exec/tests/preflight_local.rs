//! The real preflight script on this machine through the local executor: it runs under
//! `sh` on real Debian tools, and the strict parser accepts what they print.

use kbz_core::preflight::script::{self, Apt, Input, PathCheck, Rtt};
use kbz_core::{Cmd, Executor};
use kbz_exec::LocalExecutor;
use std::net::IpAddr;

#[tokio::test]
async fn the_real_script_runs_here_and_its_answer_parses() {
    for (tool, package) in [
        ("ss", "iproute2"),
        ("ip", "iproute2"),
        ("ping", "iputils-ping"),
        ("getent", "libc-bin"),
    ] {
        kbz_testkit::require_tool(tool, package);
    }
    let exec = LocalExecutor::new();
    let hostname = exec
        .run(&Cmd::new("hostname"))
        .await
        .expect("hostname")
        .stdout_str()
        .trim()
        .to_string();
    let lo: IpAddr = "127.0.0.1".parse().expect("ip");
    let input = Input {
        hostname: hostname.clone(),
        ip: Some(lo),
        dirs: vec!["/".into(), "/var/lib/kbz-preflight-test/absent".into()],
        paths: vec![
            PathCheck::present("/etc/os-release"),
            PathCheck::present("/etc/kbz-preflight-none-*"),
            // A line that begins with `ID=` (os-release's own), and one no file has.
            PathCheck {
                path: "/etc/os-release".into(),
                line_prefix: Some("ID=".into()),
            },
            PathCheck {
                path: "/etc/os-release".into(),
                line_prefix: Some("ID=\"kbz-none".into()),
            },
        ],
        peers: vec![lo],
        apt_proxy: None,
        ports: vec![],
    };
    let out = exec
        .run(&Cmd::new(script::script(&input)))
        .await
        .expect("the script runs");
    let text = out.stdout_str();
    let a = script::parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert!(a.cpus >= 1 && a.mem_kb > 0, "{a:#?}");
    assert!(!a.os.0.is_empty() && !a.kernel.is_empty(), "{a:#?}");
    assert!(
        a.clock.1 >= a.clock.0 && a.clock.0 > 1_700_000_000_000_000_000,
        "{a:#?}"
    );
    assert!(a.disk["/"] > 0, "{a:#?}");
    // An absent directory is measured on its nearest existing parent.
    assert!(
        a.disk.contains_key("/var/lib/kbz-preflight-test/absent"),
        "{a:#?}"
    );
    assert_eq!(a.hostname, hostname);
    assert!(
        a.addrs.iter().any(|(d, ip)| d == "lo" && *ip == lo),
        "{a:#?}"
    );
    assert_eq!(a.mtu.0, "lo", "{a:#?}");
    assert!(a.mtu.1 > 0, "{a:#?}");
    assert!(a.listeners.is_some(), "{a:#?}");
    assert_eq!(a.paths.get(&0), Some(&vec!["/etc/os-release".to_string()]));
    assert!(!a.paths.contains_key(&1), "{a:#?}");
    assert_eq!(a.paths.get(&2), Some(&vec!["/etc/os-release".to_string()]));
    assert!(!a.paths.contains_key(&3), "{a:#?}");
    assert!(matches!(a.rtt.get(&lo), Some(Rtt::Ms(_))), "{a:#?}");
    assert!(matches!(a.apt, Some(Apt::Ok(_) | Apt::Failed(_))), "{a:#?}");
}
