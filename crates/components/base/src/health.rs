//! Base health: the clock is synchronised (chrony's `tracking`; in a container where chronyd
//! cannot run, the host's clock; else the kernel's NTP flag as timedatectl reports it) and no
//! swap is active; both probed in the host's one batched
//! round trip and judged here, tested on captured output.

use kbz_core::health::{HealthCheck, HealthRaw, HealthStatus, Probe};
use kbz_errors::Code;

/// The probes: `chronyc tracking` (falling back to timedatectl), and the active swaps.
pub fn probes() -> Vec<Probe> {
    vec![
        Probe::new(
            "time",
            "if command -v chronyc >/dev/null 2>&1 && timeout 5 chronyc -n tracking 2>/dev/null; then :\nelif c=$(systemd-detect-virt --container 2>/dev/null); then echo \"container=$c\"\nelse printf 'NTPSynchronized=%s\\n' \"$(timedatectl show -p NTPSynchronized --value 2>/dev/null || echo unknown)\"; fi",
        ),
        Probe::new("swap", "tail -n +2 /proc/swaps"),
    ]
}

/// Whether the clock is synchronised, and a detail: from `chronyc -n tracking` (`Leap status
/// : Normal` and a reference other than none) or a `NTPSynchronized=yes|no` line.
pub fn parse_time(text: &str) -> (bool, String) {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    if let Some(leap) = field("Leap status") {
        let reference = field("Reference ID").unwrap_or_default();
        let offset = field("System time").unwrap_or_default();
        let synced = leap == "Normal" && !reference.starts_with("00000000");
        let detail = if synced {
            format!("chrony synchronised to {reference}; {offset}")
        } else {
            format!("chrony: leap status {leap}, reference {reference}")
        };
        return (synced, detail);
    }
    if let Some(kind) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("container="))
    {
        // chronyd cannot set a container's clock (no CAP_SYS_TIME): it is the host's clock.
        return (
            true,
            format!(
                "{kind} container without chrony: the clock is its host's, check time sync there"
            ),
        );
    }
    match text
        .lines()
        .find_map(|l| l.trim().strip_prefix("NTPSynchronized="))
    {
        Some("yes") => (true, "kernel clock synchronised (timedatectl)".into()),
        Some(v) => (
            false,
            format!("not synchronised (timedatectl NTPSynchronized={v}, chrony not answering)"),
        ),
        None => (false, format!("no time-sync status: {}", text.trim())),
    }
}

/// Active swap devices from `/proc/swaps` without its header.
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// One time and one swap check per host; failures are degraded.
pub fn checks(raw: &HealthRaw<'_>) -> Vec<HealthCheck> {
    let mut out = Vec::new();
    for h in raw.hosts() {
        let name = h.hostname.as_str();
        let Ok(time) = raw.get(name, "time") else {
            continue;
        };
        let (synced, detail) = parse_time(&time.text);
        out.push(HealthCheck::verdict(
            synced,
            HealthStatus::Degraded,
            "base",
            name,
            "time synchronised",
            detail,
            Code::E040,
            "check `chronyc sources -v` on the host: the [cluster] ntp_servers must answer on UDP 123; `kbz-install --only base` rewrites the sources",
        ));
        if let Ok(swap) = raw.get(name, "swap") {
            let active = parse_swaps(&swap.text);
            out.push(HealthCheck::verdict(
                active.is_empty(),
                HealthStatus::Degraded,
                "base",
                name,
                "swap off",
                if active.is_empty() {
                    "no active swap".to_string()
                } else {
                    format!("swap active: {}", active.join(", "))
                },
                Code::E040,
                "`kbz-install --only base` turns swap off (swapoff -a) and comments it out of /etc/fstab",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACKING: &str = "Reference ID    : C0A80001 (192.168.0.1)\nStratum         : 3\nRef time (UTC)  : Tue Dec 01 21:00:00 2026\nSystem time     : 0.000012 seconds fast of NTP time\nLast offset     : +0.000003 seconds\nLeap status     : Normal\n";
    const UNSYNCED: &str = "Reference ID    : 00000000 ()\nStratum         : 0\nRef time (UTC)  : Thu Jan 01 00:00:00 1970\nSystem time     : 0.000000 seconds fast of NTP time\nLeap status     : Not synchronised\n";

    #[test]
    fn chrony_tracking_tells_synchronised_from_not() {
        let (ok, d) = parse_time(TRACKING);
        assert!(ok, "{d}");
        assert!(d.contains("C0A80001"), "{d}");
        let (ok, d) = parse_time(UNSYNCED);
        assert!(!ok);
        assert!(d.contains("Not synchronised"), "{d}");
        assert!(parse_time("NTPSynchronized=yes\n").0);
        assert!(!parse_time("NTPSynchronized=no\n").0);
        assert!(!parse_time("").0);
        let (ok, d) = parse_time("container=systemd-nspawn\n");
        assert!(ok && d.contains("host"), "{d}");
    }

    #[test]
    fn active_swaps_are_listed() {
        assert!(parse_swaps("").is_empty());
        assert_eq!(
            parse_swaps("/dev/sda2 partition\t8388604\t0\t-2\n/swapfile file 1024 0 -3\n"),
            vec!["/dev/sda2", "/swapfile"]
        );
    }
}
