//! HAProxy's view of its backends, read from the stats page as CSV (`/stats;csv`), and the
//! verdict per front.

use kbz_errors::Code;

use crate::fronts::{Expect, Front};

/// One server line of the stats CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Backend (`pxname`).
    pub backend: String,
    /// Server (`svname`).
    pub server: String,
    /// `status`: `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/2` (going up), `MAINT`, ...
    pub status: String,
}

impl ServerState {
    /// Serving now (`UP`, or `UP 1/2` while the failing checks are not yet enough).
    pub fn up(&self) -> bool {
        self.status.starts_with("UP")
    }
}

/// Parses the CSV: a `# pxname,svname,...` header names the columns; the `FRONTEND` and
/// `BACKEND` summary lines are skipped.
pub fn parse_stats_csv(text: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .ok_or_else(|| {
            "the stats page did not start with a `# pxname,...` CSV header".to_string()
        })?;
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("the stats CSV has no `{name}` column"))
    };
    let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(p), Some(s), Some(status)) = (f.get(px), f.get(sv), f.get(st)) else {
            continue;
        };
        if *s == "FRONTEND" || *s == "BACKEND" {
            continue;
        }
        out.push(ServerState {
            backend: (*p).to_string(),
            server: (*s).to_string(),
            status: (*status).to_string(),
        });
    }
    Ok(out)
}

/// Whether a front is healthy from one lb host's point of view, and a one-line detail
/// (failures start with E040).
pub fn verdict(front: &Front, rows: &[ServerState]) -> (bool, String) {
    let mine: Vec<&ServerState> = rows.iter().filter(|r| r.backend == front.backend).collect();
    if mine.is_empty() {
        return (
            false,
            format!(
                "{}: backend {} is missing from the stats: the running haproxy.cfg is not \
                 kbz's (kbz-install --only haproxy)",
                Code::E040,
                front.backend
            ),
        );
    }
    let list = mine
        .iter()
        .map(|r| format!("{} {}", r.server, r.status))
        .collect::<Vec<_>>()
        .join(", ");
    let up = mine.iter().filter(|r| r.up()).count();
    match (front.expect, up) {
        (Expect::ExactlyOne, 1) | (Expect::AtLeastOne, 1..) => (true, list),
        (_, 0) => (false, format!("{}: no server is up: {list}", Code::E040)),
        (Expect::ExactlyOne, n) => (
            false,
            format!(
                "{}: {n} servers pass the check at once (expected one): {list}",
                Code::E040
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from HAProxy 2.6's `/stats;csv` on an lb host (columns after `status` cut).
    const CSV: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight
stats,FRONTEND,,,1,1,4096,3,405,22153,0,0,0,,,,,OPEN,
stats,BACKEND,0,0,0,0,410,0,405,22153,0,0,,0,0,0,0,UP,0
fe_postgres_primary,FRONTEND,,,0,0,4096,0,0,0,0,0,0,,,,,OPEN,
postgres_primary,db1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
postgres_primary,db2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
postgres_primary,db3,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN 1/2,1
postgres_primary,BACKEND,0,0,0,0,410,0,0,0,0,0,,0,0,0,0,UP,1
postgres_replicas,db1,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
postgres_replicas,db2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
postgres_replicas,db3,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2,1
redis_master,db1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
redis_master,db2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1
redis_master,db3,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1
";

    fn front(backend: &'static str, expect: Expect) -> Front {
        Front {
            backend,
            vip_key: "postgres",
            vip: "192.0.2.100".parse().expect("ip"),
            port: 5432,
            server_port: 5432,
            servers: Vec::new(),
            expect,
        }
    }

    #[test]
    fn parses_server_lines_by_header() {
        let rows = parse_stats_csv(CSV).expect("csv");
        assert_eq!(rows.len(), 9);
        assert_eq!(
            rows[2],
            ServerState {
                backend: "postgres_primary".into(),
                server: "db3".into(),
                status: "DOWN 1/2".into()
            }
        );
        assert!(!rows[2].up());
        assert!(rows[5].up(), "UP 1/2 still serves");
        assert!(parse_stats_csv("<html>401</html>").is_err());
        assert!(parse_stats_csv("").is_err());
    }

    #[test]
    fn verdicts() {
        let rows = parse_stats_csv(CSV).expect("csv");
        let (ok, detail) = verdict(&front("postgres_primary", Expect::ExactlyOne), &rows);
        assert!(ok, "{detail}");
        assert_eq!(detail, "db1 UP, db2 DOWN, db3 DOWN 1/2");
        let (ok, _) = verdict(&front("postgres_replicas", Expect::AtLeastOne), &rows);
        assert!(ok);
        let (ok, detail) = verdict(&front("redis_master", Expect::ExactlyOne), &rows);
        assert!(!ok);
        assert!(detail.starts_with("E040: 2 servers"), "{detail}");
        let (ok, detail) = verdict(&front("mariadb", Expect::AtLeastOne), &rows);
        assert!(!ok && detail.contains("missing"), "{detail}");
        let down: Vec<ServerState> = rows
            .iter()
            .cloned()
            .map(|mut r| {
                r.status = "DOWN".into();
                r
            })
            .collect();
        let (ok, detail) = verdict(&front("postgres_replicas", Expect::AtLeastOne), &down);
        assert!(
            !ok && detail.starts_with("E040: no server is up"),
            "{detail}"
        );
    }
}
