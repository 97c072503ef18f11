//! What a binary runs when a scenario ends or is interrupted (Ctrl-C): every fault the
//! scenario can inject is undone on every host of the target (each undo is a no-op where
//! nothing is injected; a host is powered on only when its SSH port does not answer), and the
//! workload's scratch data (PostgreSQL table, Redis keys) is removed.

use crate::fault::{self, Fault, HostCommands};
use crate::scenario::{Scenario, Target};
use crate::FaultError;
use std::time::Duration;

/// Undoes `s`'s fault on every host of `t` ([`Target::hosts`]): removes the nftables
/// partition, starts a killed (or held-down) unit, powers on (or rejoins) every host that
/// does not answer. Returns what
/// could not be undone (host, error); empty when the fleet is as before.
pub async fn heal_all(s: &Scenario, t: &Target) -> Vec<(String, FaultError)> {
    let mut failed = Vec::new();
    for m in &t.hosts() {
        let name = m.host.hostname.clone();
        let r = match &s.fault {
            Fault::PeerPartition => fault::heal(m.exec.as_ref()).await,
            Fault::KillUnit { unit } => fault::start_unit(m.exec.as_ref(), unit).await,
            Fault::HoldDown { unit } => fault::release(m.exec.as_ref(), unit).await,
            Fault::Switchover => Ok(()),
            Fault::PowerCut | Fault::Isolate => {
                // A fresh connection to its SSH port tells a host that is off from one that
                // is up (an SSH session opened before the fault may be dead either way).
                let answers = ssh_answers(&t.routes, m.host.ip, m.host.ssh_port).await;
                let cmds = if s.fault == Fault::PowerCut {
                    t.power.as_ref()
                } else {
                    t.isolate.as_ref()
                };
                match (answers, cmds) {
                    (false, Some(c)) => {
                        fault::power(&HostCommands::render(&c.on, &name, m.host.ip), &name).await
                    }
                    _ => Ok(()),
                }
            }
        };
        if let Err(e) = r {
            failed.push((name, e));
        }
    }
    failed
}

/// Whether a host's SSH port answers within 5 s. Directly, an accepted connection is enough;
/// through a route (a tunnel, whose local end accepts even when the bastion cannot reach the
/// host) only the server's banner (`SSH-`) counts.
pub async fn ssh_answers(routes: &kbz_core::net::Routes, ip: std::net::IpAddr, port: u16) -> bool {
    use tokio::io::AsyncReadExt;
    let via = routes.get(ip, port);
    let up = async {
        let mut s = tokio::net::TcpStream::connect(via.unwrap_or((ip, port).into()))
            .await
            .ok()?;
        if via.is_none() {
            return Some(());
        }
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.ok()?;
        (&buf == b"SSH-").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), up).await,
        Ok(Some(()))
    )
}

/// Removes `s`'s scratch data through its service's VIP.
pub async fn drop_scratch(s: &Scenario, t: &Target) -> Result<(), FaultError> {
    t.service(s)?.drop_scratch().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Member;
    use crate::postgres::PgTarget;
    use kbz_core::{Host, Output, Role, Secret};
    use kbz_testkit::FakeHost;
    use std::sync::Arc;

    fn fleet() -> (Vec<Arc<FakeHost>>, Target) {
        let fakes: Vec<Arc<FakeHost>> = (1..=3)
            .map(|i| Arc::new(FakeHost::debian(&format!("db{i}"))))
            .collect();
        let members = fakes
            .iter()
            .enumerate()
            .map(|(i, f)| Member {
                host: Host::new(
                    &format!("db{}", i + 1),
                    format!("127.0.0.{}", i + 1).parse().expect("ip"),
                    &[Role::Postgres],
                ),
                exec: f.clone(),
            })
            .collect();
        let t = Target {
            members,
            pg: Some(PgTarget {
                addr: "127.0.0.1".parse().expect("ip"),
                port: 1,
                user: "postgres".into(),
                password: Secret::new("x"),
                dbname: "postgres".into(),
                timeout: Duration::from_secs(1),
                tls_ca: None,
                routes: Default::default(),
            }),
            redis: None,
            k8s: None,
            galera: None,
            rabbitmq: None,
            lbs: Vec::new(),
            power: None,
            isolate: None,
            writers: 1,
            routes: Default::default(),
        };
        (fakes, t)
    }

    #[tokio::test]
    async fn every_member_loses_the_partition_and_gets_its_unit_back() {
        let (fakes, t) = fleet();
        for f in &fakes {
            f.script("nft delete table inet kbz_fault", Output::default());
            f.script("systemctl start 'etcd'", Output::default());
        }
        let s = Scenario::named("etcd-leader-partition").expect("scenario");
        assert!(heal_all(&s, &t).await.is_empty());
        let s = Scenario::named("etcd-member-crash").expect("scenario");
        assert!(heal_all(&s, &t).await.is_empty());
        for f in &fakes {
            let ran = f.ran();
            assert!(
                ran.iter()
                    .any(|c| c.contains("nft delete table inet kbz_fault")),
                "{ran:?}"
            );
            assert!(
                ran.iter().any(|c| c.contains("systemctl start 'etcd'")),
                "{ran:?}"
            );
        }
        // A switchover leaves nothing to undo: no command at all.
        let before: usize = fakes.iter().map(|f| f.ran().len()).sum();
        let s = Scenario::named("postgres-switchover").expect("scenario");
        assert!(heal_all(&s, &t).await.is_empty());
        assert_eq!(fakes.iter().map(|f| f.ran().len()).sum::<usize>(), before);
    }

    #[tokio::test]
    async fn a_heal_that_fails_is_reported_with_its_host() {
        let (fakes, t) = fleet();
        fakes[0].script(
            "nft delete table inet kbz_fault",
            Output {
                status: 1,
                stdout: vec![],
                stderr: b"nft: permission denied".to_vec(),
            },
        );
        for f in &fakes[1..] {
            f.script("nft delete table inet kbz_fault", Output::default());
        }
        let s = Scenario::named("postgres-leader-partition").expect("scenario");
        let failed = heal_all(&s, &t).await;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "db1");
        assert!(
            failed[0].1.to_string().contains("permission denied"),
            "{}",
            failed[0].1
        );
    }

    #[tokio::test]
    async fn haproxy_is_released_on_every_host_lb_hosts_included() {
        let (fakes, mut t) = fleet();
        let lb = Arc::new(FakeHost::debian("lb1"));
        t.lbs = vec![
            // db1 is an lb host too: it must be healed once, not twice.
            t.members[0].clone(),
            Member {
                host: Host::new("lb1", "127.0.0.9".parse().expect("ip"), &[Role::Lb]),
                exec: lb.clone(),
            },
        ];
        for f in fakes.iter().chain([&lb]) {
            f.script("systemctl unmask --runtime 'haproxy'", Output::default());
        }
        let s = Scenario::named("haproxy-down").expect("scenario");
        assert!(heal_all(&s, &t).await.is_empty());
        for f in fakes.iter().chain([&lb]) {
            let releases = f
                .ran()
                .iter()
                .filter(|c| c.contains("systemctl unmask --runtime 'haproxy'"))
                .count();
            assert_eq!(releases, 1, "{:?}", f.ran());
        }
        assert_eq!(t.hosts().len(), 4);
    }

    #[tokio::test]
    async fn a_failed_injection_is_undone_and_reported() {
        // The lab's systemd failed `systemctl kill` with EIO after masking haproxy: the mask
        // must not outlive the run.
        let (fakes, t) = fleet();
        fakes[0].script(
            "systemctl mask --runtime 'haproxy'",
            Output {
                status: 1,
                stdout: vec![],
                stderr: b"haproxy still active 5 s after SIGKILL".to_vec(),
            },
        );
        fakes[0].script("systemctl unmask --runtime 'haproxy'", Output::default());
        let s = Scenario::named("haproxy-down").expect("scenario");
        let timing = crate::Timing {
            fault: std::time::Duration::from_secs(3600),
            ..Default::default()
        };
        let in_place = std::sync::OnceLock::new();
        let err = crate::run::fault_window(&s, &t, &t.members[0], &[], &timing, &in_place)
            .await
            .expect_err("the injection failed");
        assert!(err.to_string().contains("still active"), "{err}");
        assert!(in_place.get().is_none(), "a failed fault never held");
        let ran = fakes[0].ran();
        let mask = ran
            .iter()
            .position(|c| c.contains("systemctl mask --runtime"));
        let unmask = ran
            .iter()
            .position(|c| c.contains("systemctl unmask --runtime 'haproxy' >/dev/null"));
        assert!(
            matches!((mask, unmask), (Some(m), Some(u)) if m < u),
            "{ran:?}"
        );
    }

    #[tokio::test]
    async fn the_vip_holder_is_the_lb_host_that_has_the_address() {
        let (fakes, t) = fleet();
        let addr = |a: &str| {
            format!(
                "keepalived=active\n2: eth0    inet {a}/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever\n"
            )
        };
        let out = |s: String| Output {
            status: 0,
            stdout: s.into_bytes(),
            stderr: vec![],
        };
        fakes[0].script("ip -o addr show", out(addr("10.0.0.11")));
        fakes[1].script(
            "ip -o addr show",
            out(format!(
                "{}2: eth0    inet 10.0.0.100/32 scope global eth0\n",
                addr("10.0.0.12")
            )),
        );
        // db3 does not answer: it holds nothing.
        fakes[2].script(
            "ip -o addr show",
            Output {
                status: 255,
                stdout: vec![],
                stderr: b"connection refused".to_vec(),
            },
        );
        let vip = "10.0.0.100".parse().expect("ip");
        assert_eq!(
            crate::observe::vip_holders(&t.members, vip).await,
            vec!["db2"]
        );
        assert!(crate::observe::vip_holders(&t.members[..1], vip)
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn a_routed_host_answers_only_with_its_ssh_banner_a_direct_one_when_it_accepts() {
        use tokio::io::AsyncWriteExt;
        let banner = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let (b, q) = (
            banner.local_addr().expect("addr"),
            silent.local_addr().expect("addr"),
        );
        tokio::spawn(async move {
            while let Ok((mut s, _)) = banner.accept().await {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
            }
        });
        // Accepts and closes at once, like a tunnel whose bastion cannot reach the host.
        tokio::spawn(async move {
            while let Ok((s, _)) = silent.accept().await {
                drop(s);
            }
        });
        let host: std::net::IpAddr = "192.0.2.7".parse().expect("ip");
        let mut routes = kbz_core::net::Routes::direct();
        routes.insert(host, 22, b);
        assert!(ssh_answers(&routes, host, 22).await);
        let mut routes = kbz_core::net::Routes::direct();
        routes.insert(host, 22, q);
        assert!(!ssh_answers(&routes, host, 22).await);
        // Directly, an accepted connection is enough; a closed port is not.
        assert!(ssh_answers(&Default::default(), q.ip(), q.port()).await);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        assert!(!ssh_answers(&Default::default(), q.ip(), port).await);
    }
}
