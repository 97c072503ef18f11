//! The preflight script (POSIX sh, read-only: it changes nothing on the host; the apt check
//! downloads one index file to a temporary file it removes) and its strict parser: every
//! line of the answer is `KEY VALUE...` with a known key, and the answer ends with its end
//! marker, or the parse fails (E081 for the host).

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::command::quote;

/// The first line of the script's answer; also what a test double matches the script by.
pub const HEADER: &str = "kbz-preflight v1";
/// The last line of the answer.
pub const END: &str = "kbz-preflight end";

/// What the script of one host asks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Input {
    /// The inventory hostname (its resolution is checked).
    pub hostname: String,
    /// The inventory address (its interface's MTU is reported).
    pub ip: Option<IpAddr>,
    /// Directories whose free space is measured (the nearest existing parent when absent).
    pub dirs: Vec<String>,
    /// Paths or globs whose presence is reported, by index (with a text the file must
    /// contain, when one is given).
    pub paths: Vec<PathCheck>,
    /// Members of the host's quorum services to ping (RTT and don't-fragment MTU).
    pub peers: Vec<IpAddr>,
    /// The apt proxy to fetch through (`[cluster] apt_proxy`), if one is set.
    pub apt_proxy: Option<String>,
    /// The TCP ports the host's components listen on: a listener on one of them that `ss`
    /// names no process for is looked at again before the answer is sent.
    pub ports: Vec<u16>,
}

/// One file check of the preflight: `path` (a path or glob) exists and, when `line_prefix`
/// is set, has a line that begins with that text (a fixed string, not a pattern).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathCheck {
    /// The path or glob.
    pub path: String,
    /// A text some line of the file must begin with.
    pub line_prefix: Option<String>,
}

impl PathCheck {
    /// A check of presence only.
    pub fn present(path: &str) -> Self {
        PathCheck {
            path: path.into(),
            line_prefix: None,
        }
    }
}

/// A path is put in the script unquoted (so a glob expands) only when it is made of these
/// characters; anything else is quoted and matched literally.
fn glob_safe(p: &str) -> bool {
    p.starts_with('/')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.*+-".contains(c))
}

/// The script for one host.
pub fn script(input: &Input) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# kbz preflight: read-only host checks\necho '{HEADER}'\n"
    ));
    s.push_str("echo \"clock_start $(date +%s%N)\"\n");
    s.push_str("echo \"cpus $(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)\"\n");
    s.push_str(
        "awk '/^MemTotal:/{print \"mem_kb\", $2} /^SwapTotal:/{print \"swap_kb\", $2}' /proc/meminfo\n",
    );
    s.push_str(
        "( . /etc/os-release 2>/dev/null; echo \"os ${ID:-unknown} ${VERSION_ID:-unknown}\" )\n",
    );
    s.push_str("echo \"kernel $(uname -r)\"\n");
    for d in &input.dirs {
        s.push_str(&format!(
            "d={}; p=\"$d\"; while [ ! -e \"$p\" ]; do p=$(dirname \"$p\"); done; \
             echo \"disk $d $(df -Pk \"$p\" 2>/dev/null | awk 'NR==2{{print $4}}')\"\n",
            quote(d)
        ));
    }
    s.push_str(
        "v=$(timedatectl show -p NTPSynchronized --value 2>/dev/null); echo \"ntp ${v:-unknown}\"\n",
    );
    s.push_str("echo \"hostname $(hostname)\"\n");
    s.push_str(&format!(
        "getent ahosts {} 2>/dev/null | awk '{{print \"resolve\", $1}}' | sort -u\n",
        quote(&input.hostname)
    ));
    s.push_str(
        "ip -o addr show 2>/dev/null | awk '{split($4, a, \"/\"); print \"addr\", $2, a[1]}'\n",
    );
    let ip = input.ip.map(|i| i.to_string()).unwrap_or_default();
    s.push_str(&format!(
        "dev=$(ip -o addr show 2>/dev/null | awk -v a={} '{{split($4, x, \"/\"); if (x[1] == a) {{print $2; exit}}}}')\n\
         mtu=$(cat \"/sys/class/net/${{dev:-none}}/mtu\" 2>/dev/null || echo 0)\n\
         echo \"mtu ${{dev:--}} $mtu\"\n",
        quote(&ip)
    ));
    // A listener on one of kbz's ports that `ss` names no process for is often a service
    // starting or stopping: look again (at most twice, a second apart) before it is reported
    // as a stranger's.
    let ports: String = input.ports.iter().map(|p| format!(" {p}")).collect();
    s.push_str(&format!(
        "if command -v ss >/dev/null 2>&1; then n=0; \
         while l=$(ss -ltnpH 2>/dev/null); [ \"$n\" -lt 2 ] && printf '%s\\n' \"$l\" \
         | awk -v p='{ports} ' '$0 != \"\" && !/users:/ {{ k = split($4, a, \":\"); \
         if (index(p, \" \" a[k] \" \")) f = 1 }} END {{ exit !f }}'; \
         do n=$((n + 1)); sleep 1; done; \
         [ -z \"$l\" ] || printf '%s\\n' \"$l\" | sed 's/^/listen /'; \
         echo listen_end; else echo listen_unavailable; fi\n"
    ));
    for (i, p) in input.paths.iter().enumerate() {
        let shown = if glob_safe(&p.path) {
            p.path.clone()
        } else {
            quote(&p.path)
        };
        let grep = p
            .line_prefix
            .as_deref()
            .map(|t| {
                format!(
                    " && awk -v t={} 'index($0, t) == 1 {{ f = 1; exit }} END {{ exit !f }}' \"$f\" 2>/dev/null",
                    quote(&t.replace('\\', "\\\\"))
                )
            })
            .unwrap_or_default();
        s.push_str(&format!(
            "for f in {shown}; do if [ -e \"$f\" ]{grep}; then echo \"path {i} $f\"; fi; done\n"
        ));
    }
    let proxy = input
        .apt_proxy
        .as_deref()
        .map(|p| format!(" -o Acquire::http::Proxy={}", quote(p)))
        .unwrap_or_default();
    // The apt source check and the pings wait on the network: they run side by side in the
    // background, each into its own file, printed once all are done.
    s.push_str("bg=$(mktemp -d) || { echo 'kbz preflight: mktemp -d failed' >&2; exit 1; }\n");
    s.push_str(&format!(
        "(u=$(apt-get --print-uris update 2>/dev/null | sed -n \"1s/^'\\([^']*\\)'.*/\\1/p\")\n\
         if [ ! -x /usr/lib/apt/apt-helper ]; then echo 'apt fail no-apt-helper'\n\
         elif [ -z \"$u\" ]; then echo 'apt fail no-source'\n\
         else f=$(mktemp); if timeout 20 /usr/lib/apt/apt-helper{proxy} download-file \"$u\" \"$f\" \
         >/dev/null 2>&1; then echo \"apt ok $u\"; else echo \"apt fail $u\"; fi; rm -f \"$f\"; fi\n\
         ) > \"$bg/apt\" 2>/dev/null &\n"
    ));
    for (i, p) in input.peers.iter().enumerate() {
        let header = if p.is_ipv4() { 28 } else { 48 };
        s.push_str(&format!(
            "(if command -v ping >/dev/null 2>&1; then \
             r=$(ping -n -q -c 2 -i 0.2 -W 1 {p} 2>/dev/null | sed -n 's|^rtt [^=]*= [0-9.]*/\\([0-9.]*\\)/.*|\\1|p'); \
             echo \"rtt {p} ${{r:-lost}}\"; \
             if [ \"$mtu\" -gt {header} ]; then \
             if ping -n -q -c 1 -W 1 -M do -s $((mtu - {header})) {p} >/dev/null 2>&1; \
             then echo \"pmtu {p} $mtu ok\"; else echo \"pmtu {p} $mtu fail\"; fi; fi; \
             else echo \"rtt {p} noping\"; fi) > \"$bg/peer{i}\" 2>/dev/null &\n"
        ));
    }
    s.push_str("wait; cat \"$bg\"/* 2>/dev/null; rm -rf \"$bg\"\n");
    s.push_str("echo \"clock_end $(date +%s%N)\"\n");
    s.push_str(&format!("echo '{END}'\n"));
    s
}

/// A TCP listener as `ss -ltnpH` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// The bound address, `None` for every address (`*`, `0.0.0.0`, `[::]`).
    pub addr: Option<IpAddr>,
    /// The port.
    pub port: u16,
    /// The processes holding the socket (empty when `ss` could not say).
    pub processes: Vec<String>,
}

/// The apt check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Apt {
    /// The first index of the host's sources downloaded.
    Ok(String),
    /// It did not (`no-source`, `no-apt-helper`, or the URI that failed).
    Failed(String),
}

/// A ping of a peer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Rtt {
    /// Average round trip in milliseconds.
    Ms(f64),
    /// No answer.
    Lost,
    /// `ping` is not installed.
    NoPing,
}

/// One host's parsed answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Answer {
    /// Host clock at the start and the end of the script, in ns since the epoch.
    pub clock: (u64, u64),
    /// Online CPUs.
    pub cpus: u32,
    /// MemTotal and SwapTotal, KiB.
    pub mem_kb: u64,
    /// SwapTotal, KiB.
    pub swap_kb: u64,
    /// `ID` and `VERSION_ID` of /etc/os-release.
    pub os: (String, String),
    /// `uname -r`.
    pub kernel: String,
    /// Free KiB per directory asked.
    pub disk: BTreeMap<String, u64>,
    /// `NTPSynchronized`: `yes`, `no` or `unknown`.
    pub ntp: String,
    /// `hostname`.
    pub hostname: String,
    /// Addresses the inventory hostname resolves to on the host.
    pub resolve: BTreeSet<IpAddr>,
    /// Interface addresses.
    pub addrs: Vec<(String, IpAddr)>,
    /// The inventory address' interface and its MTU (0 when not found).
    pub mtu: (String, u32),
    /// Listeners, or `None` when `ss` is missing.
    pub listeners: Option<Vec<Listener>>,
    /// Indexes of [`Input::paths`] present, with what each matched.
    pub paths: BTreeMap<usize, Vec<String>>,
    /// The apt check.
    pub apt: Option<Apt>,
    /// Pings per peer.
    pub rtt: BTreeMap<IpAddr, Rtt>,
    /// Don't-fragment pings at the interface MTU per peer (`true`: passed).
    pub pmtu: BTreeMap<IpAddr, (u32, bool)>,
}

fn num<T: std::str::FromStr>(v: &str, line: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("unexpected value in `{line}`"))
}

/// Parses one `ss -ltnpH` line (without the `listen ` prefix).
pub fn parse_listener(line: &str) -> Result<Listener, String> {
    let bad = || format!("unexpected ss line `{line}`");
    let f: Vec<&str> = line.split_whitespace().collect();
    // State, Recv-Q, Send-Q, Local, Peer, [Process].
    if f.len() < 5 || f[0] != "LISTEN" {
        return Err(bad());
    }
    let (addr, port) = f[3].rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let addr = addr.split('%').next().unwrap_or(addr);
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr = match addr {
        "*" | "0.0.0.0" | "::" => None,
        a => {
            let ip: IpAddr = a.parse().map_err(|_| bad())?;
            Some(match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                v4 => v4,
            })
        }
    };
    let rest = f[5..].join(" ");
    let mut processes = Vec::new();
    let mut r = rest.as_str();
    while let Some(i) = r.find("(\"") {
        let after = &r[i + 2..];
        let end = after.find('"').ok_or_else(bad)?;
        let name = &after[..end];
        if !processes.iter().any(|p| p == name) {
            processes.push(name.to_string());
        }
        r = &after[end..];
    }
    if !rest.is_empty() && processes.is_empty() {
        return Err(bad());
    }
    Ok(Listener {
        addr,
        port,
        processes,
    })
}

/// Parses the answer of [`script`] strictly: a line with an unknown key, a value that does
/// not parse, a missing header or end marker, or a required key missing is an error.
pub fn parse(text: &str) -> Result<Answer, String> {
    let mut a = Answer::default();
    let mut lines = text.lines();
    match lines.next() {
        Some(l) if l == HEADER => {}
        Some(l) => {
            return Err(format!(
                "the answer does not start with `{HEADER}` but `{l}`"
            ))
        }
        None => return Err("the answer is empty".into()),
    }
    let mut seen = BTreeSet::new();
    let mut ended = false;
    let mut listeners: Vec<Listener> = Vec::new();
    let mut listen_state = None;
    for line in lines {
        if ended {
            return Err(format!("a line after the end marker: `{line}`"));
        }
        if line == END {
            ended = true;
            continue;
        }
        let (key, v) = line.split_once(' ').unwrap_or((line, ""));
        seen.insert(key.to_string());
        match key {
            "clock_start" => a.clock.0 = num(v, line)?,
            "clock_end" => a.clock.1 = num(v, line)?,
            "cpus" => a.cpus = num(v, line)?,
            "mem_kb" => a.mem_kb = num(v, line)?,
            "swap_kb" => a.swap_kb = num(v, line)?,
            "os" => {
                let (id, ver) = v
                    .split_once(' ')
                    .ok_or_else(|| format!("unexpected value in `{line}`"))?;
                a.os = (id.into(), ver.into());
            }
            "kernel" if !v.is_empty() => a.kernel = v.into(),
            "disk" => {
                let (d, kb) = v
                    .rsplit_once(' ')
                    .ok_or_else(|| format!("unexpected value in `{line}`"))?;
                a.disk.insert(d.into(), num(kb, line)?);
            }
            "ntp" if matches!(v, "yes" | "no" | "unknown") => a.ntp = v.into(),
            "hostname" if !v.is_empty() => a.hostname = v.into(),
            "resolve" => {
                a.resolve.insert(num(v, line)?);
            }
            "addr" => {
                let (dev, ip) = v
                    .split_once(' ')
                    .ok_or_else(|| format!("unexpected value in `{line}`"))?;
                a.addrs.push((dev.into(), num(ip, line)?));
            }
            "mtu" => {
                let (dev, m) = v
                    .split_once(' ')
                    .ok_or_else(|| format!("unexpected value in `{line}`"))?;
                a.mtu = (dev.into(), num(m, line)?);
            }
            "listen" if listen_state.is_none() => listeners.push(parse_listener(v)?),
            "listen_end" if v.is_empty() && listen_state.is_none() => listen_state = Some(true),
            "listen_unavailable" if v.is_empty() && listen_state.is_none() => {
                listen_state = Some(false)
            }
            "path" => {
                let (i, p) = v
                    .split_once(' ')
                    .ok_or_else(|| format!("unexpected value in `{line}`"))?;
                a.paths.entry(num(i, line)?).or_default().push(p.into());
            }
            "apt" => {
                a.apt = Some(match v.split_once(' ') {
                    Some(("ok", u)) => Apt::Ok(u.into()),
                    Some(("fail", why)) => Apt::Failed(why.into()),
                    _ => return Err(format!("unexpected value in `{line}`")),
                })
            }
            "rtt" => {
                let (p, r) = v
                    .split_once(' ')
                    .ok_or_else(|| format!("unexpected value in `{line}`"))?;
                let r = match r {
                    "lost" => Rtt::Lost,
                    "noping" => Rtt::NoPing,
                    ms => Rtt::Ms(num(ms, line)?),
                };
                a.rtt.insert(num(p, line)?, r);
            }
            "pmtu" => {
                let f: Vec<&str> = v.split(' ').collect();
                let [p, m, ok] = f.as_slice() else {
                    return Err(format!("unexpected value in `{line}`"));
                };
                let ok = match *ok {
                    "ok" => true,
                    "fail" => false,
                    _ => return Err(format!("unexpected value in `{line}`")),
                };
                a.pmtu.insert(num(p, line)?, (num(m, line)?, ok));
            }
            _ => return Err(format!("unexpected line `{line}`")),
        }
    }
    if !ended {
        return Err(format!("the answer stops before `{END}`"));
    }
    for key in [
        "clock_start",
        "clock_end",
        "cpus",
        "mem_kb",
        "swap_kb",
        "os",
        "kernel",
        "ntp",
        "hostname",
        "mtu",
    ] {
        if !seen.contains(key) {
            return Err(format!("the answer has no `{key}` line"));
        }
    }
    a.listeners = match listen_state {
        Some(true) => Some(listeners),
        Some(false) => None,
        None => return Err("the answer has no `listen_end` line".into()),
    };
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_lines_of_debian() {
        let l = parse_listener(
            "LISTEN 0      200    10.77.0.11:5432      0.0.0.0:*    users:((\"postgres\",pid=812,fd=6))",
        )
        .unwrap();
        assert_eq!(l.addr, Some("10.77.0.11".parse().unwrap()));
        assert_eq!(
            (l.port, l.processes.as_slice()),
            (5432, &["postgres".to_string()][..])
        );
        let l = parse_listener("LISTEN 0      4096   127.0.0.53%lo:53        0.0.0.0:*").unwrap();
        assert_eq!((l.addr, l.port), (Some("127.0.0.53".parse().unwrap()), 53));
        assert!(l.processes.is_empty());
        let l = parse_listener(
            "LISTEN 0 5 *:5432 *:* users:((\"python3\",pid=9,fd=3),(\"python3\",pid=10,fd=3))",
        )
        .unwrap();
        assert_eq!((l.addr, l.processes.len()), (None, 1));
        let l =
            parse_listener("LISTEN 0 128 [::]:22 [::]:* users:((\"sshd\",pid=1,fd=4))").unwrap();
        assert_eq!(l.addr, None);
        let l = parse_listener("LISTEN 0 128 [::ffff:10.0.0.1]:80 [::]:*").unwrap();
        assert_eq!(l.addr, Some("10.0.0.1".parse().unwrap()));
        for bad in [
            "ESTAB 0 0 1.2.3.4:5 6.7.8.9:10",
            "LISTEN 0 1 nonsense 0.0.0.0:*",
            "LISTEN 0 1 1.2.3.4:x *:*",
            "LISTEN 0 1 1.2.3.4:5 *:* junk",
        ] {
            assert!(parse_listener(bad).is_err(), "{bad}");
        }
    }

    const GOOD: &str = "kbz-preflight v1\nclock_start 1796218229042957035\ncpus 2\nmem_kb 24683520\nswap_kb 0\nos debian 12\nkernel 6.1.0-18-amd64\ndisk / 83886080\nntp yes\nhostname db1\nresolve 10.0.0.1\naddr lo 127.0.0.1\naddr eth0 10.0.0.1\nmtu eth0 1500\nlisten LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))\nlisten_end\npath 0 /etc/postgresql/15/main/postgresql.conf\napt ok http://deb.debian.org/debian/dists/bookworm/InRelease\nrtt 10.0.0.2 0.052\nrtt 10.0.0.3 lost\npmtu 10.0.0.2 1500 ok\nclock_end 1796218229542957035\nkbz-preflight end\n";

    #[test]
    fn a_whole_answer_parses() {
        let a = parse(GOOD).unwrap();
        assert_eq!((a.cpus, a.mem_kb, a.swap_kb), (2, 24683520, 0));
        assert_eq!(a.os, ("debian".into(), "12".into()));
        assert_eq!(a.disk["/"], 83886080);
        assert_eq!(a.mtu, ("eth0".into(), 1500));
        assert_eq!(a.listeners.as_ref().unwrap().len(), 1);
        assert_eq!(
            a.paths[&0],
            vec!["/etc/postgresql/15/main/postgresql.conf".to_string()]
        );
        assert_eq!(
            a.rtt[&"10.0.0.2".parse::<IpAddr>().unwrap()],
            Rtt::Ms(0.052)
        );
        assert_eq!(a.rtt[&"10.0.0.3".parse::<IpAddr>().unwrap()], Rtt::Lost);
        assert_eq!(a.clock.1 - a.clock.0, 500_000_000);
    }

    #[test]
    fn anything_unexpected_is_an_error() {
        for (from, to) in [
            ("cpus 2\n", "cpus two\n"),
            ("cpus 2\n", "cpus 2\nsurprise\n"),
            ("ntp yes\n", "ntp maybe\n"),
            ("kbz-preflight end\n", ""),
            ("kbz-preflight end\n", "kbz-preflight end\nmore\n"),
            ("kbz-preflight v1\n", "kbz-preflight v0\n"),
            ("mtu eth0 1500\n", ""),
            ("listen_end\n", ""),
            ("apt ok", "apt maybe"),
            ("pmtu 10.0.0.2 1500 ok", "pmtu 10.0.0.2 1500"),
        ] {
            let text = GOOD.replacen(from, to, 1);
            assert!(parse(&text).is_err(), "accepted with `{from}` -> `{to}`");
        }
    }

    /// The file checks, run by sh on real files: a line that begins with the text matches,
    /// the same text in a comment or later in a line does not.
    #[test]
    fn a_line_prefix_check_matches_only_lines_that_begin_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        let other = dir.path().join("other");
        std::fs::write(
            &plain,
            "ETCD_NAME=\"db1\"\nETCD_LISTEN_PEER_URLS=\"http://10.0.0.1:2380\"\n",
        )
        .unwrap();
        std::fs::write(
            &other,
            "#ETCD_LISTEN_PEER_URLS=\"http://localhost:2380\"\nETCD_LISTEN_PEER_URLS=\"https://10.0.0.1:2380\" # not ETCD_LISTEN_PEER_URLS=\"http://\n",
        )
        .unwrap();
        let check = |p: &std::path::Path| PathCheck {
            path: p.display().to_string(),
            line_prefix: Some("ETCD_LISTEN_PEER_URLS=\"http://".into()),
        };
        let s = script(&Input {
            hostname: "db1".into(),
            paths: vec![
                check(&plain),
                check(&other),
                check(&dir.path().join("absent")),
            ],
            ..Input::default()
        });
        let loops: Vec<&str> = s.lines().filter(|l| l.starts_with("for f in ")).collect();
        assert_eq!(loops.len(), 3, "{s}");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(loops.join("\n"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("path 0 {}\n", plain.display())
        );
    }

    /// Runs the script's listener line with a fake `ss` first on PATH that prints
    /// `answers[k]` on its k-th call (the last one after that); returns what the line printed
    /// and how often `ss` was called.
    fn listeners_with_fake_ss(ports: Vec<u16>, answers: &[&str]) -> (String, usize) {
        let dir = tempfile::tempdir().unwrap();
        for (k, a) in answers.iter().enumerate() {
            std::fs::write(dir.path().join(format!("answer{k}")), a).unwrap();
        }
        let ss = dir.path().join("ss");
        std::fs::write(
            &ss,
            format!(
                "#!/bin/sh\nd={}\necho x >> $d/calls\nk=$(($(wc -l < $d/calls) - 1))\n\
                 [ -e $d/answer$k ] || k={}\ncat $d/answer$k\n",
                dir.path().display(),
                answers.len() - 1
            ),
        )
        .unwrap();
        std::fs::set_permissions(&ss, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let s = script(&Input {
            hostname: "db1".into(),
            ports,
            ..Input::default()
        });
        let line = s
            .lines()
            .find(|l| l.starts_with("if command -v ss"))
            .expect("the listener line");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    dir.path().display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(dir.path().join("calls"))
            .unwrap()
            .lines()
            .count();
        (String::from_utf8_lossy(&out.stdout).into_owned(), calls)
    }

    #[test]
    fn a_listener_on_a_kbz_port_without_a_process_is_looked_at_again() {
        let starting = "LISTEN 0 5 10.0.0.1:8008 0.0.0.0:*\n";
        let named = "LISTEN 0 5 10.0.0.1:8008 0.0.0.0:* users:((\"patroni\",pid=7,fd=5))\n";
        // Patroni starting: the second look names it, and only that answer is sent.
        let (out, calls) = listeners_with_fake_ss(vec![5432, 8008], &[starting, named]);
        assert_eq!(calls, 2);
        assert_eq!(out, format!("listen {named}listen_end\n"));
        // Still unnamed after three looks: sent as it is (the judge reports it).
        let (out, calls) = listeners_with_fake_ss(vec![8008], &[starting]);
        assert_eq!(calls, 3);
        assert_eq!(out, format!("listen {starting}listen_end\n"));
        // An unnamed listener on a port kbz does not use (18008 is not 8008) costs no wait.
        let other = "LISTEN 0 5 0.0.0.0:18008 0.0.0.0:*\n";
        let (out, calls) = listeners_with_fake_ss(vec![8008], &[other]);
        assert_eq!(calls, 1);
        assert_eq!(out, format!("listen {other}listen_end\n"));
        // No listener at all.
        let (out, calls) = listeners_with_fake_ss(vec![8008], &[""]);
        assert_eq!(calls, 1);
        assert_eq!(out, "listen_end\n");
    }

    #[test]
    fn the_script_is_valid_sh_and_quotes_what_it_must() {
        let s = script(&Input {
            hostname: "db1".into(),
            ip: Some("10.0.0.1".parse().unwrap()),
            dirs: vec!["/".into(), "/var/lib/postgresql".into()],
            paths: vec![
                PathCheck::present("/etc/postgresql/*/main/postgresql.conf"),
                PathCheck::present("/odd path"),
                PathCheck {
                    path: "/etc/default/etcd".into(),
                    line_prefix: Some("ETCD_LISTEN_PEER_URLS=\"http://".into()),
                },
            ],
            peers: vec!["10.0.0.2".parse().unwrap()],
            apt_proxy: Some("http://10.0.0.9:3142".into()),
            ports: vec![5432, 8008],
        });
        assert!(s.contains("for f in /etc/postgresql/*/main/postgresql.conf;"));
        assert!(s.contains("for f in '/odd path';"));
        assert!(s.contains(
            "for f in /etc/default/etcd; do if [ -e \"$f\" ] && awk -v t='ETCD_LISTEN_PEER_URLS=\"http://' 'index($0, t) == 1 { f = 1; exit } END { exit !f }' \"$f\" 2>/dev/null; then echo \"path 2 $f\"; fi; done"
        ), "{s}");
        assert!(s.contains("-o Acquire::http::Proxy='http://10.0.0.9:3142'"));
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&s)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
