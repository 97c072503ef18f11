//! The lab's prerequisites (installed with apt when missing) and the cached Debian 12 base
//! root that every host boots as the read-only lower layer of its overlay.

use super::{net, run_cmd};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where the base root and apt-cacher-ng's cache live, outside the repository.
pub const CACHE_DIR: &str = "/var/cache/kbz-lab";
/// The Debian mirror debootstrap fetches from (through the controller's package registry).
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// Packages beyond minbase: what a host needs to boot, be reached and be installed onto.
pub const INCLUDE: &str = "systemd,systemd-sysv,dbus,openssh-server,iproute2,python3,\
    ca-certificates,procps,kmod,gnupg,iputils-ping";
/// Bump when [`INCLUDE`] or the post-processing changes, so a stale base is not reused.
const BASE_NAME: &str = "base-bookworm-v1";

/// Programs the lab runs on the controller and the Debian package providing each.
const PREREQUISITES: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("apt-cacher-ng", "apt-cacher-ng"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("ip", "iproute2"),
    ("setsid", "util-linux"),
    ("kill", "procps"),
];

/// Finds a program on PATH or in the sbin directories (which a non-login root PATH may lack).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Installs the Debian packages of any missing prerequisite.
pub fn ensure_prerequisites() -> Result<()> {
    let mut missing: Vec<&str> = PREREQUISITES
        .iter()
        .filter(|(program, _)| which(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    println!("lab: installing {}", missing.join(" "));
    let install = |missing: &[&str]| {
        run_cmd(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install(&missing).is_err() {
        // A fresh machine may have stale or no package lists.
        run_cmd(
            Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        install(&missing).context("cannot install the lab's prerequisites")?;
    }
    for (program, package) in PREREQUISITES {
        if which(program).is_none() {
            bail!("{program} is still missing after installing {package}");
        }
    }
    Ok(())
}

/// Returns the cached base root, building it first if needed. It is built in a temporary
/// directory and renamed into place, so a half-built base is never used.
pub fn ensure_base(log: &Path) -> Result<PathBuf> {
    let cache = Path::new(CACHE_DIR);
    let base = cache.join(BASE_NAME);
    if base.is_dir() {
        return Ok(base);
    }
    fs_err::create_dir_all(cache)?;
    remove_stale_builds(cache)?;
    let tmp = cache.join(format!(".tmp-{BASE_NAME}-{}", std::process::id()));
    println!(
        "lab: building the Debian 12 base root (once; about a minute) into {}",
        base.display()
    );
    let started = Instant::now();
    let log_file = fs_err::File::create(log)?;
    let status = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={INCLUDE}"),
            "bookworm",
        ])
        .arg(&tmp)
        .arg(MIRROR)
        .stdout(log_file.file().try_clone()?)
        .stderr(log_file.file().try_clone()?)
        .status()
        .context("cannot run debootstrap")?;
    if !status.success() {
        let tail = tail_lines(log, 15);
        let _ = remove_tree(&tmp);
        bail!(
            "debootstrap failed ({status}); see {}:\n{tail}",
            log.display()
        );
    }
    post_process(&tmp)?;
    fs_err::rename(&tmp, &base)?;
    println!(
        "lab: base root built in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(base)
}

/// Makes the fresh root shareable by many hosts: no shared host keys or identity, no DNS
/// server outside the lab, no package files left over.
fn post_process(root: &Path) -> Result<()> {
    for entry in fs_err::read_dir(root.join("etc/ssh"))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("ssh_host_") {
            fs_err::remove_file(&path)?;
        }
    }
    // Each host gets its own /etc/machine-id and /etc/hostname in its upper dir.
    fs_err::write(root.join("etc/machine-id"), "")?;
    fs_err::write(root.join("etc/hostname"), "localhost\n")?;
    let dbus_id = root.join("var/lib/dbus/machine-id");
    if dbus_id.exists() || dbus_id.is_symlink() {
        fs_err::remove_file(&dbus_id)?;
    }
    if dbus_id.parent().is_some_and(Path::is_dir) {
        std::os::unix::fs::symlink("/etc/machine-id", &dbus_id)
            .with_context(|| format!("cannot create {}", dbus_id.display()))?;
    }
    // No name server: hosts know each other from /etc/hosts and fetch packages through the
    // apt proxy by address, so nothing is ever sent outside the lab subnet.
    fs_err::write(
        root.join("etc/resolv.conf"),
        "# kbz lab: no name server; lab hosts are listed in /etc/hosts.\n",
    )?;
    let archives = root.join("var/cache/apt/archives");
    if archives.is_dir() {
        for entry in fs_err::read_dir(&archives)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "deb") {
                fs_err::remove_file(&path)?;
            }
        }
    }
    Ok(())
}

/// Removes earlier interrupted builds (`.tmp-*` in the lab's own cache directory).
fn remove_stale_builds(cache: &Path) -> Result<()> {
    for entry in fs_err::read_dir(cache)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        {
            println!("lab: removing interrupted base build {}", path.display());
            remove_tree(&path)?;
        }
    }
    Ok(())
}

/// Removes a directory tree the lab owns, unmounting anything mounted under it first (an
/// interrupted debootstrap leaves `/proc`, `/sys` or a bind-mounted `/dev` inside its target),
/// and refusing if a mount remains, so a removal never reaches into the controller.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut inside: Vec<PathBuf> = net::mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    inside.sort();
    for m in inside.iter().rev() {
        net::unmount(m)?;
    }
    if net::mount_points()?.iter().any(|m| m.starts_with(dir)) {
        bail!(
            "refusing to remove {}: something is still mounted under it",
            dir.display()
        );
    }
    fs_err::remove_dir_all(dir)?;
    Ok(())
}

/// The last `n` lines of a log file, for error messages.
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
