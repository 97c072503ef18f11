//! Controller-side networking and mount inspection for the lab: the bridge, per-host network
//! namespaces and veth pairs (all by the lab's own names), and `/proc/mounts`.

use super::run_cmd;
use anyhow::{Context, Result};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn ip(args: &[&str]) -> Result<String> {
    run_cmd(Command::new("ip").args(args))
}

/// True if a network link of this name exists in the controller's namespace.
pub fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Names of the named network namespaces (`ip netns list`).
pub fn netns_list() -> Result<Vec<String>> {
    let out = ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// True if a named network namespace exists.
pub fn netns_exists(name: &str) -> Result<bool> {
    Ok(netns_list()?.iter().any(|n| n == name))
}

/// True if the controller already has a route for this subnet (someone else uses it).
pub fn route_exists(subnet: &str) -> Result<bool> {
    Ok(!ip(&["-4", "route", "show", subnet])?.trim().is_empty())
}

/// Creates the lab bridge with the controller's address on it, without STP delay or multicast
/// snooping (VRRP and other multicast must reach every host as on a plain switch).
pub fn create_bridge(name: &str, addr: Ipv4Addr, prefix: u8) -> Result<()> {
    ip(&[
        "link",
        "add",
        name,
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
        "mcast_snooping",
        "0",
    ])?;
    ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", name])?;
    ip(&["link", "set", name, "up"])?;
    Ok(())
}

/// Creates a network namespace.
pub fn create_netns(name: &str) -> Result<()> {
    ip(&["netns", "add", name]).map(drop)
}

/// Creates a veth pair: `veth` on the bridge, `inner` inside the namespace with the host's
/// address, a default route via the bridge address, and loopback up.
pub fn create_host_link(
    netns: &str,
    veth: &str,
    inner: &str,
    bridge: &str,
    addr: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<()> {
    ip(&[
        "link", "add", veth, "type", "veth", "peer", "name", inner, "netns", netns,
    ])?;
    ip(&["link", "set", veth, "master", bridge, "up"])?;
    let addr = format!("{addr}/{prefix}");
    ip(&["-n", netns, "addr", "add", &addr, "dev", inner])?;
    ip(&["-n", netns, "link", "set", inner, "up"])?;
    ip(&["-n", netns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n",
        netns,
        "route",
        "add",
        "default",
        "via",
        &gateway.to_string(),
    ])?;
    Ok(())
}

/// Sets a link up or down.
pub fn set_link(name: &str, up: bool) -> Result<()> {
    ip(&["link", "set", name, if up { "up" } else { "down" }]).map(drop)
}

/// Sets a link inside a network namespace up or down.
pub fn set_link_in(netns: &str, name: &str, up: bool) -> Result<()> {
    ip(&[
        "-n",
        netns,
        "link",
        "set",
        name,
        if up { "up" } else { "down" },
    ])
    .map(drop)
}

/// True if the link is administratively up.
pub fn link_is_up(name: &str) -> Result<bool> {
    let out = ip(&["-o", "link", "show", "dev", name])?;
    let flags = out
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(f, _)| f)
        .unwrap_or("");
    Ok(flags.split(',').any(|f| f == "UP"))
}

/// Deletes a link if it exists.
pub fn delete_link(name: &str) -> Result<()> {
    if link_exists(name) {
        // A veth also vanishes on its own when its peer's namespace goes: only an error if
        // the link is still there.
        let r = ip(&["link", "del", name]);
        if r.is_err() && link_exists(name) {
            r.with_context(|| format!("cannot delete link {name}"))?;
        }
    }
    Ok(())
}

/// Deletes a named network namespace if it exists.
pub fn delete_netns(name: &str) -> Result<()> {
    if netns_exists(name)? {
        let r = ip(&["netns", "del", name]);
        if r.is_err() && netns_exists(name)? {
            r.with_context(|| format!("cannot delete netns {name}"))?;
        }
    }
    Ok(())
}

/// Mount points currently listed in `/proc/mounts` (octal escapes decoded).
pub fn mount_points() -> Result<Vec<PathBuf>> {
    let text = fs_err::read_to_string("/proc/mounts")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .collect())
}

/// Decodes the `\040`-style escapes of `/proc/mounts`.
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts a mount point (lazily, so a busy one cannot block teardown).
pub fn unmount(path: &std::path::Path) -> Result<()> {
    run_cmd(Command::new("umount").arg("-l").arg(path)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_mount(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape_mount(r"/plain"), "/plain");
        assert_eq!(unescape_mount(r"/end\"), "/end\\");
    }
}
