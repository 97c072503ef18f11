//! The shell side of the default `Executor` methods: the scripts that probe, write and change
//! a host with POSIX sh + coreutils + systemd + dpkg, and the parsers of their output. Parsers
//! are pure and tested on captured output.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::command::{Cmd, Facts};
use crate::error::ExecError;

pub use crate::command::{quote, retried_start};
use crate::resource::{Observed, Op, Resource};

/// Hex sha256 of bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The exit status of a script whose input arrived incomplete (a transfer cut midway):
/// nothing was moved into place or run. Executors turn it into [`ExecError::Transfer`].
pub const TRANSFER_INCOMPLETE_EXIT: i32 = 86;

/// The first word of the message a script prints on stderr when its input arrived
/// incomplete.
pub const TRANSFER_INCOMPLETE_MARK: &str = "kbz-transfer-incomplete";

/// The sh test that the bytes `reader` prints (a command such as `cat "$t"`) are exactly
/// `len` bytes with sha256 `sha`; on a mismatch it prints the marker and what arrived, and
/// exits [`TRANSFER_INCOMPLETE_EXIT`].
pub fn verify_transfer_sh(reader: &str, len: usize, sha: &str) -> String {
    format!(
        "kbz_n=$({reader} | wc -c); kbz_h=$({reader} | sha256sum | cut -d' ' -f1); if [ \"$kbz_n\" -ne {len} ] || [ \"$kbz_h\" != {sha} ]; then echo \"{TRANSFER_INCOMPLETE_MARK}: received $kbz_n of {len} bytes (sha256 $kbz_h, expected {sha})\" >&2; exit {TRANSFER_INCOMPLETE_EXIT}; fi"
    )
}

/// The error for an output that reports an incomplete transfer, if it does.
pub fn transfer_error(host: &str, what: &str, out: &crate::command::Output) -> Option<ExecError> {
    if out.status != TRANSFER_INCOMPLETE_EXIT {
        return None;
    }
    let stderr = out.stderr_str();
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(TRANSFER_INCOMPLETE_MARK))?;
    Some(ExecError::Transfer {
        host: host.into(),
        what: what.into(),
        detail: line.trim_start_matches(':').trim().to_string(),
    })
}

/// Writes stdin to `path` atomically: `mktemp` creates the temporary file in the same
/// directory exclusively (`O_EXCL`, so never through a planted symlink) and mode 0600, so a
/// secret is never readable by others while it is written; the copy is checked (length and
/// sha256 of `content`, the bytes the caller sends) before anything else, so a transfer cut
/// midway replaces nothing; mode and owner are set and the data synced before the rename
/// (which replaces a symlink at `path`, never follows it), and the directory is synced
/// after it, so a power cut leaves the old file or the new one.
pub fn put_file_script(path: &str, mode: u32, owner: &str, content: &[u8]) -> String {
    let p = quote(path);
    format!(
        "set -e\nd=$(dirname {p})\nmkdir -p \"$d\"\nt=$(mktemp \"$d/.kbz.XXXXXX\")\ntrap 'rm -f \"$t\"' EXIT\ncat > \"$t\"\n{verify}\nchmod {mode:o} \"$t\"\nchown {o} \"$t\"\nsync \"$t\"\nmv -fT \"$t\" {p}\ntrap - EXIT\nsync \"$d\"\n",
        o = quote(owner),
        verify = verify_transfer_sh("cat \"$t\"", content.len(), &sha256_hex(content)),
    )
}

/// Where kbz keeps its per-host lock. Under `/run` (a tmpfs): a reboot, which ends any run,
/// also frees the lock.
pub const HOST_LOCK_PATH: &str = "/run/kbz/host.lock";

/// Takes the host lock at `path` for `owner` (one line): the owner is written to a temporary
/// file that is hard-linked to `path`, which fails when `path` exists, so two runs never
/// both get it and a reader never sees half an owner. Prints `taken`, or `held` and the
/// holder's line.
pub fn host_lock_script(path: &str, owner: &str) -> String {
    let p = quote(path);
    format!(
        "set -e\nd=$(dirname {p})\nmkdir -p \"$d\"\nt=$(mktemp \"$d/.kbz-lock.XXXXXX\")\ntrap 'rm -f \"$t\"' EXIT\nprintf '%s\\n' {o} > \"$t\"\nchmod 644 \"$t\"\nif ln \"$t\" {p} 2>/dev/null; then echo taken; else echo held; cat {p} 2>/dev/null || true; fi\n",
        o = quote(owner)
    )
}

/// Releases the host lock at `path` if `owner` still holds it (a lock another run took
/// after a stale one was removed is left alone).
pub fn host_unlock_script(path: &str, owner: &str) -> String {
    let p = quote(path);
    format!(
        "if [ -f {p} ] && [ \"$(cat {p})\" = {o} ]; then rm -f {p}; fi\necho released\n",
        o = quote(owner)
    )
}

/// Parses the output of [`host_lock_script`]: `None` when taken, the holder's line when held.
pub fn parse_host_lock(host: &str, out: &str) -> Result<Option<String>, ExecError> {
    let mut lines = out.splitn(2, '\n');
    match lines.next().map(str::trim) {
        Some("taken") => Ok(None),
        Some("held") => Ok(Some(lines.next().unwrap_or("").trim().to_string())),
        _ => Err(ExecError::Protocol {
            host: host.into(),
            reason: "host-lock output did not start with taken/held".into(),
        }),
    }
}

/// Parses the output of the read-file script in `Executor::read_file`.
pub fn parse_read_file(host: &str, out: &str) -> Result<Option<Vec<u8>>, ExecError> {
    let mut lines = out.splitn(2, '\n');
    match lines.next().map(str::trim) {
        Some("absent") => Ok(None),
        Some("present") => decode_b64(host, lines.next().unwrap_or("").trim()).map(Some),
        _ => Err(ExecError::Protocol {
            host: host.into(),
            reason: "read-file output did not start with present/absent".into(),
        }),
    }
}

fn decode_b64(host: &str, s: &str) -> Result<Vec<u8>, ExecError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| ExecError::Protocol {
            host: host.into(),
            reason: format!("bad base64: {e}"),
        })
}

/// One round trip that reports OS, architecture and hostname.
pub const FACTS_SCRIPT: &str = ". /etc/os-release 2>/dev/null; echo \"os_id=$ID\"; echo \"os_version=$VERSION_ID\"; echo \"arch=$(uname -m)\"; echo \"hostname=$(hostname)\"; ip -o addr show 2>/dev/null | while read -r _ dev fam addr _; do echo \"addr=$dev $addr\"; done";

/// Parses [`FACTS_SCRIPT`] output.
pub fn parse_facts(out: &str) -> Facts {
    let mut f = Facts::default();
    for line in out.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k {
                "os_id" => f.os_id = v,
                "os_version" => f.os_version = v,
                "arch" => f.arch = v,
                "hostname" => f.hostname = v,
                "addr" => {
                    let mut w = v.split_whitespace();
                    if let (Some(dev), Some(addr)) = (w.next(), w.next()) {
                        let ip = addr.split('/').next().unwrap_or("");
                        if let Ok(ip) = ip.parse() {
                            f.addresses.push((dev.to_string(), ip));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    f
}

/// The probe as a command: [`probe_script`] with the desired files' sha256 on standard
/// input (`h<INDEX> <HASH>` lines), never on the command line, where `ps` would show an
/// unsalted hash of a file that holds a bare password.
pub fn probe_cmd(resources: &[Resource]) -> crate::command::Cmd {
    let mut hashes = String::new();
    for (i, r) in resources.iter().enumerate() {
        if let Resource::File { content, .. } = r {
            hashes.push_str(&format!("h{i} {}\n", sha256_hex(content)));
        }
    }
    crate::command::Cmd::new(probe_script(resources)).stdin(hashes.into_bytes())
}

/// A script that observes every resource and prints one `@@ INDEX KIND ...` record each.
/// Files whose sha256 equals the desired content (read from standard input, see
/// [`probe_cmd`]) are reported `same` without transferring them; others are sent
/// base64-encoded (for the diff and the undo journal).
pub fn probe_script(resources: &[Resource]) -> String {
    let mut s = String::from("set +e\nLC_ALL=C; export LC_ALL\n");
    if resources.iter().any(|r| matches!(r, Resource::File { .. })) {
        // Only `h<digits>` names with hex values are taken from standard input.
        s.push_str(
            "while read -r k v; do case $k in h*[!0-9]*|h) ;; h*) case $v in *[!0-9a-f]*) ;; *) eval \"$k=\\$v\";; esac;; esac; done\n",
        );
    }
    // Every file, directory and artifact is statted in one `stat` and hashed in one
    // `sha256sum` (a fork costs milliseconds on a busy host); each record then finds its line
    // with the shell's own pattern matching. A path with a tab, a newline or a backslash (which
    // `stat` and `sha256sum` would print differently) is probed on its own.
    let batched = |p: &str| !p.contains(['\t', '\n', '\\']);
    let mut stat_paths = Vec::new();
    let mut sum_paths = Vec::new();
    for r in resources {
        match r {
            Resource::File { path, .. } | Resource::Artifact { path, .. } if batched(path) => {
                stat_paths.push(quote(path));
                sum_paths.push(quote(path));
            }
            Resource::Directory { path, .. } if batched(path) => stat_paths.push(quote(path)),
            _ => {}
        }
    }
    if !stat_paths.is_empty() {
        s.push_str(&format!(
            "nl='\n'\n\
             set --; for p in {}; do [ -e \"$p\" ] && set -- \"$@\" \"$p\"; done\n\
             kbz_st=\"$nl$([ $# -eq 0 ] || stat --printf '%n\\t%a %U:%G\\n' -- \"$@\" 2>/dev/null)$nl\"\n",
            stat_paths.join(" ")
        ));
    }
    if !sum_paths.is_empty() {
        s.push_str(&format!(
            "set --; for p in {}; do [ -f \"$p\" ] && set -- \"$@\" \"$p\"; done\n\
             kbz_sum=\"$nl$([ $# -eq 0 ] || sha256sum -- \"$@\" 2>/dev/null)$nl\"\n\
             set --\n",
            sum_paths.join(" ")
        ));
    }
    // `st` set to the `MODE OWNER` of a batched path.
    let st = |p: &str| format!("st=${{kbz_st#*\"$nl\"{p}\"\t\"}}; st=${{st%%\"$nl\"*}}");
    let mut pkgs = Vec::new();
    let mut services = Vec::new();
    for (i, r) in resources.iter().enumerate() {
        match r {
            Resource::File { path, .. } if batched(path) => {
                let p = quote(path);
                let st = st(&p);
                s.push_str(&format!(
                    "if [ -f {p} ]; then {st}; case \"$kbz_sum\" in *\"$nl$h{i}  \"{p}\"$nl\"*) echo \"@@ {i} file same $st\";; *) echo \"@@ {i} file differs $st\"; base64 -w0 < {p}; echo;; esac; else echo \"@@ {i} file absent\"; fi\n"
                ));
            }
            Resource::File { path, .. } => {
                let p = quote(path);
                s.push_str(&format!(
                    "if [ -f {p} ]; then st=$(stat -c '%a %U:%G' {p}); if [ \"$(sha256sum < {p} | cut -d' ' -f1)\" = \"$h{i}\" ]; then echo \"@@ {i} file same $st\"; else echo \"@@ {i} file differs $st\"; base64 -w0 < {p}; echo; fi; else echo \"@@ {i} file absent\"; fi\n"
                ));
            }
            Resource::Directory { path, .. } if batched(path) => {
                let p = quote(path);
                let st = st(&p);
                s.push_str(&format!(
                    "if [ -d {p} ]; then {st}; echo \"@@ {i} dir present $st\"; else echo \"@@ {i} dir absent\"; fi\n"
                ));
            }
            Resource::Directory { path, .. } => {
                let p = quote(path);
                s.push_str(&format!(
                    "if [ -d {p} ]; then echo \"@@ {i} dir present $(stat -c '%a %U:%G' {p})\"; else echo \"@@ {i} dir absent\"; fi\n"
                ));
            }
            Resource::Package { name, .. } => pkgs.push(name.clone()),
            Resource::Service { name, .. } => services.push((i, format!("{name}.service"))),
            Resource::Sysctl { key, .. } => {
                s.push_str(&format!(
                    "if v=$(sysctl -n {k} 2>/dev/null); then echo \"@@ {i} sysctl present $v\" | tr '\\t' ' '; else echo \"@@ {i} sysctl absent\"; fi\n",
                    k = quote(key)
                ));
            }
            Resource::KernelModule { name } => {
                // Loaded, or built into the kernel (then it may have no /sys/module entry).
                let n = quote(name);
                let evidence = match name.as_str() {
                    "br_netfilter" => " || [ -d /proc/sys/net/bridge ]",
                    "overlay" => " || grep -qw overlay /proc/filesystems",
                    _ => "",
                };
                s.push_str(&format!(
                    "if [ -d /sys/module/{n} ] || grep -qs \"/{name}.ko\" \"/lib/modules/$(uname -r)/modules.builtin\"{evidence}; then echo \"@@ {i} module loaded\"; else echo \"@@ {i} module absent\"; fi\n"
                ));
            }
            Resource::SwapOff => {
                s.push_str(&format!(
                    "if [ -n \"$(tail -n +2 /proc/swaps 2>/dev/null)\" ]; then echo \"@@ {i} swap active\"; else echo \"@@ {i} swap inactive\"; fi; base64 -w0 < /etc/fstab 2>/dev/null; echo\n"
                ));
            }
            Resource::Artifact { path, .. } if batched(path) => {
                let p = quote(path);
                let st = st(&p);
                s.push_str(&format!(
                    "if [ -f {p} ]; then {st}; h=${{kbz_sum%%\"  \"{p}\"$nl\"*}}; h=${{h##*\"$nl\"}}; echo \"@@ {i} artifact present $st $h\"; else echo \"@@ {i} artifact absent\"; fi\n"
                ));
            }
            Resource::Artifact { path, .. } => {
                let p = quote(path);
                s.push_str(&format!(
                    "if [ -f {p} ]; then echo \"@@ {i} artifact present $(stat -c '%a %U:%G' {p}) $(sha256sum < {p} | cut -d' ' -f1)\"; else echo \"@@ {i} artifact absent\"; fi\n"
                ));
            }
            Resource::Command {
                unless, creates, ..
            } => {
                let mut guards = Vec::new();
                if let Some(u) = unless {
                    guards.push(format!("( {u} ) >/dev/null 2>&1"));
                }
                if let Some(c) = creates {
                    guards.push(format!("[ -e {} ]", quote(c)));
                }
                if guards.is_empty() {
                    s.push_str(&format!("echo \"@@ {i} command pending\"\n"));
                } else {
                    s.push_str(&format!(
                        "if {}; then echo \"@@ {i} command done\"; else echo \"@@ {i} command pending\"; fi\n",
                        guards.join(" || ")
                    ));
                }
            }
        }
    }
    if !services.is_empty() {
        // One `systemctl show` for every unit: its blocks come in the order of the units,
        // separated by empty lines; a unit it printed nothing for gets an empty record.
        let ids: Vec<String> = services.iter().map(|(i, _)| i.to_string()).collect();
        let units: Vec<String> = services.iter().map(|(_, u)| quote(u)).collect();
        s.push_str(&format!(
            "systemctl show -p LoadState -p UnitFileState -p ActiveState -p ConditionResult -p ConditionTimestampMonotonic {} 2>/dev/null \
             | awk -v ids='{}' 'BEGIN {{ n = split(ids, a, \" \"); k = 1 }} \
             /^$/ {{ if (k <= n) print \"@@ \" a[k] \" service \" l; k++; l = \"\"; next }} {{ l = l $0 \" \" }} \
             END {{ if (l != \"\" && k <= n) {{ print \"@@ \" a[k] \" service \" l; k++ }} for (; k <= n; k++) print \"@@ \" a[k] \" service \" }}'\n",
            units.join(" "),
            ids.join(" ")
        ));
    }
    if !pkgs.is_empty() {
        let names: Vec<String> = pkgs.iter().map(|p| quote(p)).collect();
        s.push_str(&format!(
            "echo '@@ pkgs'; dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' {} 2>/dev/null; echo '@@ endpkgs'\n",
            names.join(" ")
        ));
    }
    s
}

/// Parses [`probe_script`] output into one [`Observed`] per resource, in order.
pub fn parse_probe(
    host: &str,
    resources: &[Resource],
    out: &str,
) -> Result<Vec<Observed>, ExecError> {
    let perr = |reason: String| ExecError::Protocol {
        host: host.into(),
        reason,
    };
    let mut found: Vec<Option<Observed>> = vec![None; resources.len()];
    let mut installed = std::collections::BTreeSet::new();
    let mut lines = out.lines();
    while let Some(line) = lines.next() {
        if line == "@@ pkgs" {
            for l in lines.by_ref() {
                if l == "@@ endpkgs" {
                    break;
                }
                let mut parts = l.split_whitespace();
                if let (Some(name), Some(status)) = (parts.next(), parts.next()) {
                    if status.starts_with("ii") || status.starts_with("hi") {
                        installed.insert(name.split(':').next().unwrap_or(name).to_string());
                    }
                }
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("@@ ") else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let idx: usize = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| perr(format!("bad probe line `{line}`")))?;
        let kind = parts.next().unwrap_or("");
        let tail = parts.next().unwrap_or("");
        let r = resources
            .get(idx)
            .ok_or_else(|| perr(format!("probe index {idx} out of range")))?;
        let obs = match (kind, r) {
            ("file", Resource::File { content, .. }) => {
                let mut w = tail.split_whitespace();
                match w.next() {
                    Some("absent") => Observed::File {
                        content: None,
                        mode: None,
                        owner: None,
                    },
                    Some(state @ ("same" | "differs")) => {
                        let mode = w.next().and_then(|m| u32::from_str_radix(m, 8).ok());
                        let owner = w.next().map(str::to_string);
                        let data = if state == "same" {
                            content.clone()
                        } else {
                            decode_b64(host, lines.next().unwrap_or("").trim())?
                        };
                        Observed::File {
                            content: Some(data),
                            mode,
                            owner,
                        }
                    }
                    _ => return Err(perr(format!("bad file record `{line}`"))),
                }
            }
            ("dir", Resource::Directory { .. }) => {
                let mut w = tail.split_whitespace();
                let exists = w.next() == Some("present");
                Observed::Directory {
                    exists,
                    mode: w.next().and_then(|m| u32::from_str_radix(m, 8).ok()),
                    owner: w.next().map(str::to_string),
                }
            }
            ("service", Resource::Service { .. }) => parse_service(tail),
            ("sysctl", Resource::Sysctl { .. }) => Observed::Sysctl {
                value: tail.strip_prefix("present ").map(normalize_ws),
            },
            ("module", Resource::KernelModule { .. }) => Observed::KernelModule {
                loaded: tail.trim() == "loaded",
            },
            ("swap", Resource::SwapOff) => Observed::Swap {
                active: tail.trim() == "active",
                fstab: decode_b64(host, lines.next().unwrap_or("").trim())?,
            },
            ("artifact", Resource::Artifact { .. }) => {
                let mut w = tail.split_whitespace();
                match w.next() {
                    Some("present") => Observed::Artifact {
                        mode: w.next().and_then(|m| u32::from_str_radix(m, 8).ok()),
                        owner: w.next().map(str::to_string),
                        sha256: w.next().map(str::to_ascii_lowercase),
                    },
                    Some("absent") => Observed::Artifact {
                        sha256: None,
                        mode: None,
                        owner: None,
                    },
                    _ => return Err(perr(format!("bad artifact record `{line}`"))),
                }
            }
            ("command", Resource::Command { .. }) => Observed::Command {
                satisfied: tail.trim() == "done",
            },
            _ => {
                return Err(perr(format!(
                    "probe record `{line}` does not match resource {}",
                    r.id()
                )))
            }
        };
        found[idx] = Some(obs);
    }
    resources
        .iter()
        .zip(found)
        .map(|(r, f)| match (r, f) {
            (Resource::Package { name, .. }, _) => Ok(Observed::Package {
                installed: installed.contains(name),
            }),
            (_, Some(o)) => Ok(o),
            (r, None) => Err(perr(format!("probe printed nothing for {}", r.id()))),
        })
        .collect()
}

fn parse_service(tail: &str) -> Observed {
    let mut load = "";
    let mut file_state = "";
    let mut active = "";
    let mut condition = "";
    let mut condition_checked = false;
    for kv in tail.split_whitespace() {
        match kv.split_once('=') {
            Some(("LoadState", v)) => load = v,
            Some(("UnitFileState", v)) => file_state = v,
            Some(("ActiveState", v)) => active = v,
            Some(("ConditionResult", v)) => condition = v,
            Some(("ConditionTimestampMonotonic", v)) => condition_checked = v != "0",
            _ => {}
        }
    }
    // A unit whose start condition was checked and failed (chrony in a container, say) is
    // as running as systemd will let it be: starting it again would change nothing.
    let refused_by_condition = active == "inactive" && condition == "no" && condition_checked;
    Observed::Service {
        exists: load == "loaded",
        enabled: matches!(
            file_state,
            "enabled" | "enabled-runtime" | "static" | "alias" | "generated" | "indirect"
        ),
        active: matches!(active, "active" | "activating" | "reloading") || refused_by_condition,
    }
}

/// Collapses runs of white space to one space (sysctl prints tabs in multi-value keys).
pub fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every apt-get kbz runs waits up to 5 minutes for dpkg's lock (apt's daily timers and
/// unattended-upgrades hold it for a while after boot) instead of failing at once.
const APT_LOCK_WAIT: &str = "-o DPkg::Lock::Timeout=300";

const APT: &str = "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";

/// The stamp (in `/var/lib/apt/periodic`) kbz touches after every successful `apt-get update`.
pub const APT_STAMP: &str = "kbz-update-stamp";

/// One `apt-get install` of `names` (quoted, space-separated) with `apt-get update` at most
/// once: skipped when the last successful update (kbz's stamp in `periodic`, or apt's own
/// `update-success-stamp` where update-notifier keeps it) is under an hour old and nothing
/// under `etc_apt` (a source, a pin, the proxy) changed since; then only a failed install
/// updates and retries. Directories are parameters for the tests.
fn install_script(names: &str, etc_apt: &str, periodic: &str) -> String {
    let (etc, per) = (quote(etc_apt), quote(periodic));
    let update =
        format!("apt-get -q {APT_LOCK_WAIT} update && mkdir -p {per} && touch {per}/{APT_STAMP}");
    let install = format!("{APT} --no-install-recommends install {names}");
    format!(
        "s=$(ls -t {per}/{APT_STAMP} {per}/update-success-stamp 2>/dev/null | head -n 1)\n\
         if [ -n \"$s\" ] && [ -n \"$(find \"$s\" -mmin -60)\" ] && [ -z \"$(find {etc} -newer \"$s\" -print | head -n 1)\" ]; then u=0; else u=1; {update}; fi\n\
         {install} || {{ [ \"$u\" = 0 ] && {update} && {install}; }}"
    )
}

/// The command that performs an operation (all but `WriteFile`, which uses `put_file`).
pub fn op_cmd(op: &Op) -> Cmd {
    let script = match op {
        Op::WriteFile {
            path,
            mode,
            owner,
            content,
        } => return Cmd::new(put_file_script(path, *mode, owner, content)).stdin(content.clone()),
        // Only files: a directory in the way was never written by kbz (the probe reports it
        // as no file), so undoing a failed write must leave it alone.
        Op::RemoveFile { path } => {
            let p = quote(path);
            format!("if [ -d {p} ] && [ ! -L {p} ]; then :; else rm -f {p}; fi")
        }
        Op::EnsureDir { path, mode, owner } => {
            let p = quote(path);
            format!(
                "mkdir -p {p} && chmod {mode:o} {p} && chown {} {p}",
                quote(owner)
            )
        }
        Op::RemoveDir { path } => format!("rmdir {} 2>/dev/null || true", quote(path)),
        Op::InstallPackages { names } => {
            let n: Vec<String> = names.iter().map(|p| quote(p)).collect();
            install_script(&n.join(" "), "/etc/apt", "/var/lib/apt/periodic")
        }
        Op::RemovePackages { names } => {
            let n: Vec<String> = names.iter().map(|p| quote(p)).collect();
            format!("{APT} purge {}", n.join(" "))
        }
        Op::EnableService { name } => format!("systemctl enable {}", quote(name)),
        Op::DisableService { name } => format!("systemctl disable {}", quote(name)),
        Op::StartService { name } => format!("systemctl start {}", quote(name)),
        Op::StopService { name } => format!("systemctl stop {}", quote(name)),
        Op::RestartService { name } => format!("systemctl restart {}", quote(name)),
        Op::SetSysctl { key, value } => {
            format!("sysctl -q -w {}", quote(&format!("{key}={value}")))
        }
        Op::LoadModule { name } => format!("modprobe {}", quote(name)),
        Op::UnloadModule { name } => format!("modprobe -r {} 2>/dev/null || true", quote(name)),
        Op::SwapOff => "swapoff -a".into(),
        Op::SwapOn => "swapon -a".into(),
        // The engine applies it (it owns the download cache); an executor handed one
        // directly refuses rather than guessing where the bytes are.
        Op::PutArtifact { path, .. } => format!(
            "echo 'kbz: the artifact for {} must be pushed by the engine' >&2; exit 2",
            path.replace('\'', "")
        ),
        Op::SaveArtifact { path } => {
            let p = quote(path);
            let prev = quote(&format!("{path}.kbz-prev"));
            format!("if [ -f {p} ]; then cp -p {p} {prev}; fi")
        }
        Op::RestoreArtifact { path } => {
            let p = quote(path);
            let prev = quote(&format!("{path}.kbz-prev"));
            format!("if [ -f {prev} ]; then mv -f {prev} {p}; fi")
        }
        Op::Run { script, .. } => script.clone(),
    };
    Cmd::new(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the install script under sh with a logging `apt-get` first on PATH (failing
    /// `install` while `fail_installs` says so); returns (updates, installs, success).
    fn apt_run(dir: &std::path::Path, fail_installs: u32) -> (usize, usize, bool) {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let log = dir.join("log");
        let left = dir.join("fail-left");
        std::fs::write(&left, fail_installs.to_string()).expect("fail-left");
        std::fs::write(
            bin.join("apt-get"),
            format!(
                "#!/bin/sh\necho \"$*\" >> {log}\ncase \"$*\" in *install*) n=$(cat {left}); if [ \"$n\" -gt 0 ]; then echo $((n-1)) > {left}; exit 100; fi;; esac\nexit 0\n",
                log = log.display(),
                left = left.display()
            ),
        )
        .expect("apt-get");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("apt-get"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let _ = std::fs::remove_file(&log);
        let script = install_script(
            "'chrony'",
            &dir.join("etc-apt").display().to_string(),
            &dir.join("periodic").display().to_string(),
        );
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", path)
            .status()
            .expect("sh");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let updates = text.lines().filter(|l| l.ends_with("update")).count();
        let installs = text.lines().filter(|l| l.contains(" install ")).count();
        (updates, installs, st.success())
    }

    fn age(path: &std::path::Path, ago: &str) {
        let st = std::process::Command::new("touch")
            .arg("-d")
            .arg(ago)
            .arg(path)
            .status()
            .expect("touch");
        assert!(st.success());
    }

    #[test]
    fn apt_get_update_runs_at_most_once_and_not_when_the_lists_are_fresh() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = tmp.path();
        std::fs::create_dir_all(d.join("etc-apt/sources.list.d")).expect("etc");
        age(&d.join("etc-apt/sources.list.d"), "-1 day");
        age(&d.join("etc-apt"), "-1 day");
        // No stamp: one update, then the install; the stamp is left.
        assert_eq!(apt_run(d, 0), (1, 1, true));
        let stamp = d.join("periodic").join(APT_STAMP);
        assert!(stamp.exists());
        // Fresh stamp, /etc/apt unchanged since: no update.
        age(&stamp, "-10 minutes");
        assert_eq!(apt_run(d, 0), (0, 1, true));
        // A new source after the last update: update first.
        age(&stamp, "-10 minutes");
        std::fs::write(d.join("etc-apt/sources.list.d/k8s.list"), "deb x y\n").expect("src");
        assert_eq!(apt_run(d, 0), (1, 1, true));
        // Fresh lists but the install fails: one update and one retry.
        age(&stamp, "-10 minutes");
        age(&d.join("etc-apt/sources.list.d/k8s.list"), "-1 day");
        age(&d.join("etc-apt/sources.list.d"), "-1 day");
        assert_eq!(apt_run(d, 1), (1, 2, true));
        // Stale lists (over an hour) and an install that keeps failing: still one update.
        age(&stamp, "-2 hours");
        assert_eq!(apt_run(d, 5), (1, 1, false));
        // apt's own success stamp counts too.
        std::fs::remove_file(&stamp).expect("rm");
        let apt_stamp = d.join("periodic/update-success-stamp");
        std::fs::write(&apt_stamp, "").expect("stamp");
        age(&apt_stamp, "-5 minutes");
        assert_eq!(apt_run(d, 0), (0, 1, true));
    }

    #[test]
    fn quote_survives_single_quotes() {
        assert_eq!(quote("a'b"), "'a'\\''b'");
    }

    #[test]
    fn parses_captured_probe_output() {
        let res = vec![
            Resource::file("/etc/hosts", "x\n", 0o644),
            Resource::file("/etc/new", "y", 0o600),
            Resource::package("chrony"),
            Resource::package("curl"),
            Resource::service("ssh", &[]),
            Resource::Sysctl {
                key: "net.ipv4.ip_local_port_range".into(),
                value: "1024 65000".into(),
            },
            Resource::KernelModule {
                name: "overlay".into(),
            },
            Resource::SwapOff,
            Resource::Command {
                id: "hostname".into(),
                script: "hostname db1".into(),
                unless: Some("[ \"$(hostname)\" = db1 ]".into()),
                creates: None,
                undo: None,
            },
        ];
        // Captured from a Debian 12 host (fstab shortened), then indexes matched.
        let out = "@@ 0 file differs 644 root:root\nb2xkCg==\n@@ 1 file absent\n@@ 4 service LoadState=loaded UnitFileState=enabled ActiveState=active \n@@ 5 sysctl present 32768 60999\n@@ 6 module loaded\n@@ 7 swap active\nVVVJRD0xIC8gZXh0NApVVUlEPTIgbm9uZSBzd2FwIHN3IDAgMAo=\n@@ 8 command pending\n@@ pkgs\nchrony ii \ncurl un \n@@ endpkgs\n";
        let obs = parse_probe("h", &res, out).expect("parse");
        assert_eq!(
            obs[0],
            Observed::File {
                content: Some(b"old\n".to_vec()),
                mode: Some(0o644),
                owner: Some("root:root".into())
            }
        );
        assert_eq!(
            obs[1],
            Observed::File {
                content: None,
                mode: None,
                owner: None
            }
        );
        assert_eq!(obs[2], Observed::Package { installed: true });
        assert_eq!(obs[3], Observed::Package { installed: false });
        assert_eq!(
            obs[4],
            Observed::Service {
                exists: true,
                enabled: true,
                active: true
            }
        );
        assert_eq!(
            obs[5],
            Observed::Sysctl {
                value: Some("32768 60999".into())
            }
        );
        assert_eq!(obs[6], Observed::KernelModule { loaded: true });
        match &obs[7] {
            Observed::Swap { active, fstab } => {
                assert!(*active);
                assert!(String::from_utf8_lossy(fstab).contains("none swap sw"));
            }
            o => panic!("unexpected {o:?}"),
        }
        assert_eq!(obs[8], Observed::Command { satisfied: false });
    }

    #[test]
    fn desired_hashes_travel_on_stdin_not_on_the_command_line() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tmp");
        let same = dir.path().join("same");
        let other = dir.path().join("other");
        std::fs::write(&same, b"pw-one\n").expect("write");
        std::fs::write(&other, b"old\n").expect("write");
        let file = |p: &std::path::Path, c: &[u8]| Resource::File {
            path: p.display().to_string(),
            content: c.to_vec(),
            mode: 0o600,
            owner: "root:root".into(),
            present: true,
        };
        let res = [file(&same, b"pw-one\n"), file(&other, b"pw-two\n")];
        let cmd = probe_cmd(&res);
        for r in &res {
            if let Resource::File { content, .. } = r {
                assert!(!cmd.script.contains(&sha256_hex(content)), "{}", cmd.script);
            }
        }
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd.script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(cmd.stdin.as_deref().unwrap_or_default())
            .expect("feed");
        let out = child.wait_with_output().expect("wait");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("@@ 0 file same"), "{text}");
        assert!(text.contains("@@ 1 file differs"), "{text}");
    }

    /// The services of a probe are asked in one `systemctl show`; a fake `systemctl` first on
    /// PATH prints a block for the first two units only (and says nothing of the third).
    #[test]
    fn every_service_is_read_from_one_systemctl_show() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("systemctl");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}/calls\n\
                 printf 'LoadState=loaded\\nActiveState=active\\nUnitFileState=enabled\\n\\n\\\
                 LoadState=not-found\\nActiveState=inactive\\nUnitFileState=\\n'\n",
                dir.path().display()
            ),
        )
        .expect("write");
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let res = vec![
            Resource::service("etcd", &[]),
            Resource::file("/nonexistent/kbz/a", "x", 0o644),
            Resource::service("kbz-absent", &[]),
            Resource::service("patroni", &[]),
        ];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(probe_script(&res))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    dir.path().display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .output()
            .expect("sh");
        let text = String::from_utf8_lossy(&out.stdout);
        let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
        assert_eq!(calls.lines().count(), 1, "{calls}");
        assert!(
            calls.contains("etcd.service kbz-absent.service patroni.service"),
            "{calls}"
        );
        let obs = parse_probe("h", &res, &text).expect("parse");
        assert!(
            matches!(
                obs[0],
                Observed::Service {
                    exists: true,
                    active: true,
                    enabled: true,
                    ..
                }
            ),
            "{:?}",
            obs[0]
        );
        assert!(
            matches!(obs[2], Observed::Service { exists: false, .. }),
            "{:?}",
            obs[2]
        );
        assert!(
            matches!(obs[3], Observed::Service { exists: false, .. }),
            "{text}"
        );
    }

    #[test]
    fn artifacts_are_probed_by_sha256_only() {
        let pin = crate::artifact::ArtifactPin::new("k3s", "v1", &"ab".repeat(32), "pip:k3s");
        let res = vec![
            Resource::artifact("/usr/local/bin/k3s", &pin, 0o755),
            Resource::absent_artifact("/usr/local/bin/old", &pin),
        ];
        let script = probe_script(&res);
        assert!(
            script.contains("for p in '/usr/local/bin/k3s' '/usr/local/bin/old'; do [ -f \"$p\" ]")
                && script.contains("sha256sum -- \"$@\""),
            "{script}"
        );
        assert!(
            !script.contains("base64"),
            "artifacts are never transferred by the probe"
        );
        let out = format!(
            "@@ 0 artifact present 755 root:root {}\n@@ 1 artifact absent\n",
            "AB".repeat(32)
        );
        let obs = parse_probe("h", &res, &out).expect("parse");
        assert_eq!(
            obs[0],
            Observed::Artifact {
                sha256: Some("ab".repeat(32)),
                mode: Some(0o755),
                owner: Some("root:root".into())
            }
        );
        assert_eq!(
            obs[1],
            Observed::Artifact {
                sha256: None,
                mode: None,
                owner: None
            }
        );
        assert!(parse_probe("h", &res[..1], "@@ 0 artifact maybe\n").is_err());
    }

    #[test]
    fn same_file_is_reported_without_transfer() {
        let res = vec![Resource::file("/etc/a", "desired", 0o600)];
        let obs = parse_probe("h", &res, "@@ 0 file same 600 root:root\n").expect("parse");
        assert_eq!(
            obs[0],
            Observed::File {
                content: Some(b"desired".to_vec()),
                mode: Some(0o600),
                owner: Some("root:root".into())
            }
        );
    }

    #[test]
    fn missing_record_is_an_error_not_a_guess() {
        let res = vec![Resource::KernelModule {
            name: "overlay".into(),
        }];
        assert!(parse_probe("h", &res, "").is_err());
    }

    #[test]
    fn unit_skipped_by_its_condition_counts_as_running() {
        let res = vec![Resource::service("chrony", &[])];
        let out = "@@ 0 service LoadState=loaded UnitFileState=enabled ActiveState=inactive ConditionResult=no ConditionTimestampMonotonic=123 \n";
        let obs = parse_probe("h", &res, out).expect("parse");
        assert_eq!(
            obs[0],
            Observed::Service {
                exists: true,
                enabled: true,
                active: true
            }
        );
        let never_started = "@@ 0 service LoadState=loaded UnitFileState=enabled ActiveState=inactive ConditionResult=no ConditionTimestampMonotonic=0 \n";
        let obs = parse_probe("h", &res, never_started).expect("parse");
        assert_eq!(
            obs[0],
            Observed::Service {
                exists: true,
                enabled: true,
                active: false
            }
        );
    }

    #[test]
    fn facts_from_captured_output() {
        let out = "os_id=debian\nos_version=12\narch=x86_64\nhostname=db1\naddr=lo 127.0.0.1/8\naddr=host0 10.77.0.11/24\naddr=host0 fe80::1/64\n";
        let f = parse_facts(out);
        assert_eq!(f.os_id, "debian");
        assert!(f.supported_os());
        assert_eq!(
            f.interface_of("10.77.0.11".parse().expect("ip")),
            Some("host0")
        );
        assert_eq!(f.addresses.len(), 3);
    }

    #[test]
    fn read_file_output() {
        assert_eq!(parse_read_file("h", "absent\n").expect("ok"), None);
        assert_eq!(
            parse_read_file("h", "present\naGk=").expect("ok"),
            Some(b"hi".to_vec())
        );
        assert!(parse_read_file("h", "garbage").is_err());
    }
}
