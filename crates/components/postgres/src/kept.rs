//! Kept data: who goes first when the install finds PostgreSQL data directories that an
//! earlier install left (`uninstall` keeps them) and no Patroni runs anywhere.
//!
//! Patroni with an empty store (etcd is new after an uninstall) lets the first member that
//! starts take the leader key with whatever its data directory holds. The rolling install
//! starts members one at a time, so without care the first host in inventory order leads,
//! even when it was an asynchronous replica that lacks the last primary's commits; a member
//! that has WAL past that point can then never stream again (its history diverged). So the
//! last primary is rolled first: of the kept data directories without `standby.signal`
//! (primaries when they stopped), the one on the newest timeline (the highest timeline its
//! `pg_wal` names: a primary promoted after an older one stopped is on a newer one). It
//! leads with everything it had, and the former standbys, which never had more than it,
//! follow it. When that cannot be told (no primary, two on the newest timeline, or a standby
//! on a newer timeline than every primary), the install stops before it changes anything
//! and says how to choose.

use kbz_core::component::{ComponentError, HostExec};

/// A member's kept state, as [`script`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// No data directory.
    None,
    /// A data directory with `standby.signal`: a standby when it stopped.
    Standby,
    /// A data directory without `standby.signal`: a primary when it stopped.
    Primary,
}

/// One member's answer: whether Patroni runs and what its data directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberKept {
    /// `patroni.service` is active.
    pub patroni_active: bool,
    /// The data directory.
    pub data: Kept,
    /// The highest timeline the data directory's `pg_wal` names (0 without data).
    pub timeline: u32,
}

/// The read-only script asking one member (three lines: `patroni=...`, `data=...`,
/// `tli=...`: the highest timeline of a WAL segment or history file in `pg_wal`, hex).
pub fn script(data_dir: &str) -> String {
    let d = kbz_core::shell::quote(data_dir);
    format!(
        "# kbz-postgres roll order\n\
         if systemctl is-active --quiet patroni; then echo patroni=active; else echo patroni=inactive; fi\n\
         if [ -f {d}/PG_VERSION ]; then\n\
         \x20 if [ -f {d}/standby.signal ]; then echo data=standby; else echo data=primary; fi\n\
         else echo data=none; fi\n         echo tli=$(ls {d}/pg_wal 2>/dev/null | sed -n 's/^\\([0-9A-F]\\{{8\\}}\\)\\([0-9A-F]\\{{16\\}}\\|\\.history\\)$/\\1/p' | sort | tail -n 1)\n"
    )
}

/// Parses [`script`]'s answer; `None` on anything else.
pub fn parse(stdout: &str) -> Option<MemberKept> {
    let (mut patroni, mut data, mut timeline) = (None, None, None);
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(t) = line.strip_prefix("tli=") {
            timeline = Some(if t.is_empty() {
                0
            } else {
                u32::from_str_radix(t, 16).ok()?
            });
            continue;
        }
        match line {
            "patroni=active" => patroni = Some(true),
            "patroni=inactive" => patroni = Some(false),
            "data=none" => data = Some(Kept::None),
            "data=standby" => data = Some(Kept::Standby),
            "data=primary" => data = Some(Kept::Primary),
            _ => return None,
        }
    }
    Some(MemberKept {
        patroni_active: patroni?,
        data: data?,
        timeline: timeline?,
    })
}

/// The roll order from every member's answer (in inventory order): inventory order while
/// Patroni runs anywhere or nothing is kept; else the kept primary on the newest timeline
/// first. When no member can be told to be it, an error naming each member's state.
pub fn order(
    members: &[(String, MemberKept)],
    data_dir: &str,
) -> Result<Vec<String>, ComponentError> {
    let names = || members.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    if members.iter().any(|(_, m)| m.patroni_active)
        || members.iter().all(|(_, m)| m.data == Kept::None)
    {
        return Ok(names());
    }
    let newest = |kind: Kept| {
        members
            .iter()
            .filter(|(_, m)| m.data == kind)
            .map(|(_, m)| m.timeline)
            .max()
    };
    let (primary_tl, standby_tl) = (newest(Kept::Primary), newest(Kept::Standby));
    let primaries: Vec<&String> = members
        .iter()
        .filter(|(_, m)| m.data == Kept::Primary && Some(m.timeline) == primary_tl)
        .map(|(n, _)| n)
        .collect();
    if let ([first], Some(p)) = (&primaries[..], primary_tl) {
        if standby_tl.is_none_or(|s| s <= p) {
            let first = (*first).clone();
            let mut out = vec![first.clone()];
            out.extend(names().into_iter().filter(|n| *n != first));
            return Ok(out);
        }
    }
    let states: Vec<String> = members
        .iter()
        .map(|(n, m)| match m.data {
            Kept::None => format!("{n}: no data"),
            Kept::Standby => format!("{n}: a standby's data on timeline {}", m.timeline),
            Kept::Primary => format!("{n}: a primary's data on timeline {}", m.timeline),
        })
        .collect();
    let why = if primaries.is_empty() {
        "none of them was the primary when it stopped"
    } else if primaries.len() > 1 {
        "more than one of them was a primary on the newest timeline when it stopped"
    } else {
        "a standby is on a newer timeline than every kept primary"
    };
    Err(ComponentError::Bootstrap {
        component: "postgres".into(),
        reason: format!(
            "Patroni runs on no member and the data directories an earlier install kept \
             cannot tell which member must lead ({}): {why}, and starting the wrong one first \
             would drop the commits only another has. Keep the data directory of the member \
             that has the newest data (compare `pg_controldata {data_dir}` on each: the latest \
             checkpoint's timeline, then its location) and move the others aside (`mv \
             {data_dir} {data_dir}.old` on those hosts: they are cloned from the leader), \
             then run the install again",
            states.join(", ")
        ),
    })
}

/// Asks every member (concurrently) and returns the roll order.
pub async fn roll_order(hosts: &[HostExec], data_dir: &str) -> Result<Vec<String>, ComponentError> {
    let script = script(data_dir);
    let answers = futures_join(hosts, &script).await?;
    let mut members = Vec::new();
    for (hx, out) in hosts.iter().zip(answers) {
        let name = hx.host.hostname.clone();
        let m = parse(&out.stdout_str()).ok_or_else(|| ComponentError::Bootstrap {
            component: "postgres".into(),
            reason: format!(
                "{name}: unexpected answer about its kept data ({})",
                out.stdout_str().trim()
            ),
        })?;
        members.push((name, m));
    }
    order(&members, data_dir)
}

async fn futures_join(
    hosts: &[HostExec],
    script: &str,
) -> Result<Vec<kbz_core::Output>, ComponentError> {
    let mut set = tokio::task::JoinSet::new();
    for (i, hx) in hosts.iter().enumerate() {
        let hx = hx.clone();
        let script = script.to_string();
        set.spawn(async move { (i, super::run(&hx, &script).await) });
    }
    let mut out: Vec<Option<kbz_core::Output>> = vec![None; hosts.len()];
    while let Some(j) = set.join_next().await {
        let (i, r) = j.map_err(|e| ComponentError::Bootstrap {
            component: "postgres".into(),
            reason: format!("task failed: {e}"),
        })?;
        out[i] = Some(r?);
    }
    Ok(out.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "/var/lib/postgresql/15/kbz";

    fn m(patroni_active: bool, data: Kept, timeline: u32) -> MemberKept {
        MemberKept {
            patroni_active,
            data,
            timeline,
        }
    }

    fn members(states: &[(bool, Kept, u32)]) -> Vec<(String, MemberKept)> {
        states
            .iter()
            .enumerate()
            .map(|(i, (a, d, t))| (format!("db{}", i + 1), m(*a, *d, *t)))
            .collect()
    }

    use Kept::{None as N, Primary as P, Standby as S};

    #[test]
    fn the_script_answers_are_parsed_strictly() {
        assert_eq!(
            parse("patroni=inactive\ndata=standby\ntli=0000000A\n"),
            Some(m(false, S, 10))
        );
        assert_eq!(
            parse("patroni=active\ndata=none\ntli=\n"),
            Some(m(true, N, 0))
        );
        assert_eq!(parse("patroni=inactive\ndata=none\n"), None);
        assert_eq!(parse("patroni=inactive\ndata=none\ntli=zz\n"), None);
        assert_eq!(parse("patroni=inactive\ndata=none\ntli=\nrm: oops\n"), None);
    }

    /// The script on a real directory: the highest timeline of segments and history files.
    #[test]
    fn the_script_reads_the_newest_timeline_of_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = dir.path().join("pg_wal");
        std::fs::create_dir(&wal).expect("pg_wal");
        for f in [
            "000000040000000000000007",
            "00000005.history",
            "00000003.history",
            "archive_status",
            "000000050000000000000007.partial",
        ] {
            std::fs::write(wal.join(f), "").expect("file");
        }
        std::fs::write(dir.path().join("PG_VERSION"), "15\n").expect("PG_VERSION");
        let d = dir.path().display().to_string();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&d).replace("systemctl is-active --quiet patroni", "false"))
            .output()
            .expect("sh");
        let got = parse(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(got, Some(m(false, P, 5)), "{out:?}");
    }

    #[test]
    fn a_fresh_fleet_and_a_running_cluster_keep_inventory_order() {
        let fresh = members(&[(false, N, 0), (false, N, 0), (false, N, 0)]);
        assert_eq!(order(&fresh, DIR).unwrap(), ["db1", "db2", "db3"]);
        // Patroni runs on one member: it decides, whatever the others keep.
        let running = members(&[(false, S, 2), (false, S, 2), (true, P, 2)]);
        assert_eq!(order(&running, DIR).unwrap(), ["db1", "db2", "db3"]);
    }

    #[test]
    fn the_kept_primary_on_the_newest_timeline_is_rolled_first() {
        let kept = members(&[(false, S, 4), (false, P, 4), (false, S, 4)]);
        assert_eq!(order(&kept, DIR).unwrap(), ["db2", "db1", "db3"]);
        // A member without data (a replaced host) just clones.
        let kept = members(&[(false, N, 0), (false, S, 3), (false, P, 3)]);
        assert_eq!(order(&kept, DIR).unwrap(), ["db3", "db1", "db2"]);
        // The old leader stopped first and its sync standby was promoted before it stopped.
        let kept = members(&[(false, S, 4), (false, P, 4), (false, P, 5)]);
        assert_eq!(order(&kept, DIR).unwrap(), ["db3", "db1", "db2"]);
    }

    #[test]
    fn kept_data_that_cannot_tell_the_last_primary_is_e035_with_the_way_out() {
        for states in [
            [(false, S, 4), (false, S, 4), (false, N, 0)],
            [(false, P, 4), (false, S, 4), (false, P, 4)],
            [(false, P, 4), (false, S, 5), (false, S, 4)],
        ] {
            let e = order(&members(&states), DIR).unwrap_err();
            assert_eq!(kbz_errors::HasCode::code(&e), kbz_errors::Code::E035);
            let s = e.to_string();
            assert!(s.contains("db1: a"), "{s}");
            assert!(s.contains("on timeline 4"), "{s}");
            assert!(s.contains(&format!("mv {DIR} {DIR}.old")), "{s}");
            assert!(s.contains("pg_controldata"), "{s}");
        }
    }
}
