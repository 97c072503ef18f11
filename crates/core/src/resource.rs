//! Typed resources (what a host should look like), what a probe observed, and the operations
//! that move a host from one to the other. All of it is plain data: `Debug + Serialize`.

use serde::{Deserialize, Serialize};

use crate::artifact::ArtifactPin;

/// Desired state of one thing on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A regular file with exact content, mode and owner; or its absence.
    File {
        /// Absolute path.
        path: String,
        /// Content; ignored when `present` is false.
        #[serde(with = "text_or_bytes")]
        content: Vec<u8>,
        /// Permission bits (`0o644`).
        mode: u32,
        /// `user:group`.
        owner: String,
        /// False: the file must not exist.
        present: bool,
    },
    /// A directory with mode and owner.
    Directory {
        /// Absolute path.
        path: String,
        /// Permission bits.
        mode: u32,
        /// `user:group`.
        owner: String,
    },
    /// A Debian package, installed (or removed) in bulk with its siblings.
    Package {
        /// Package name.
        name: String,
        /// False: the package must not be installed.
        present: bool,
    },
    /// A systemd service.
    Service {
        /// Unit name without `.service`.
        name: String,
        /// Enabled at boot.
        enabled: bool,
        /// Active now.
        running: bool,
        /// Restart the service when any of these files changes in this run.
        restart_on: Vec<String>,
    },
    /// A runtime kernel parameter (persist it with a File in /etc/sysctl.d).
    Sysctl {
        /// Key (`net.ipv4.ip_forward`).
        key: String,
        /// Value as `sysctl -n` prints it.
        value: String,
    },
    /// A loaded kernel module (persist it with a File in /etc/modules-load.d).
    KernelModule {
        /// Module name.
        name: String,
    },
    /// No active swap, and no swap entries left active in /etc/fstab.
    SwapOff,
    /// A pinned artifact (a binary, a wheel, a manifest) at `path`, identified by its sha256.
    /// The probe compares the host's sha256 only; the bytes are fetched by the controller and
    /// transferred only when they differ. Absent: removed on uninstall.
    Artifact {
        /// Absolute path on the host.
        path: String,
        /// What must be there.
        pin: ArtifactPin,
        /// Permission bits.
        mode: u32,
        /// `user:group`.
        owner: String,
        /// False: the file must not exist.
        present: bool,
    },
    /// A command run only when its guard says the work is not done yet.
    Command {
        /// A stable identifier shown in plans.
        id: String,
        /// The script.
        script: String,
        /// Skip when this script exits 0.
        unless: Option<String>,
        /// Skip when this path exists.
        creates: Option<String>,
        /// Script that undoes it, run on rollback.
        undo: Option<String>,
    },
}

impl Resource {
    /// A present file.
    pub fn file(path: &str, content: impl Into<Vec<u8>>, mode: u32) -> Self {
        Resource::File {
            path: path.into(),
            content: content.into(),
            mode,
            owner: "root:root".into(),
            present: true,
        }
    }

    /// An absent file.
    pub fn absent_file(path: &str) -> Self {
        Resource::File {
            path: path.into(),
            content: Vec::new(),
            mode: 0o644,
            owner: "root:root".into(),
            present: false,
        }
    }

    /// An installed package.
    pub fn package(name: &str) -> Self {
        Resource::Package {
            name: name.into(),
            present: true,
        }
    }

    /// A service enabled and running, restarted when `restart_on` files change.
    pub fn service(name: &str, restart_on: &[&str]) -> Self {
        Resource::Service {
            name: name.into(),
            enabled: true,
            running: true,
            restart_on: restart_on.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A service stopped and disabled (for uninstall).
    pub fn stopped_service(name: &str) -> Self {
        Resource::Service {
            name: name.into(),
            enabled: false,
            running: false,
            restart_on: Vec::new(),
        }
    }

    /// A package that must not be installed (for uninstall).
    pub fn absent_package(name: &str) -> Self {
        Resource::Package {
            name: name.into(),
            present: false,
        }
    }

    /// A pinned artifact at `path` (root-owned).
    pub fn artifact(path: &str, pin: &ArtifactPin, mode: u32) -> Self {
        Resource::Artifact {
            path: path.into(),
            pin: pin.clone(),
            mode,
            owner: "root:root".into(),
            present: true,
        }
    }

    /// A pinned artifact that must not be on the host (for uninstall).
    pub fn absent_artifact(path: &str, pin: &ArtifactPin) -> Self {
        Resource::Artifact {
            path: path.into(),
            pin: pin.clone(),
            mode: 0o644,
            owner: "root:root".into(),
            present: false,
        }
    }

    /// The shell scripts a resource carries (a command's script, guard and undo), for
    /// checking them with `sh -n` in tests.
    pub fn scripts(&self) -> Vec<&str> {
        match self {
            Resource::Command {
                script,
                unless,
                undo,
                ..
            } => std::iter::once(script.as_str())
                .chain(unless.as_deref())
                .chain(undo.as_deref())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A short id for plans and journals: `file:/etc/hosts`.
    pub fn id(&self) -> String {
        match self {
            Resource::File { path, .. } => format!("file:{path}"),
            Resource::Directory { path, .. } => format!("dir:{path}"),
            Resource::Package { name, .. } => format!("package:{name}"),
            Resource::Service { name, .. } => format!("service:{name}"),
            Resource::Sysctl { key, .. } => format!("sysctl:{key}"),
            Resource::KernelModule { name } => format!("module:{name}"),
            Resource::SwapOff => "swap:off".into(),
            Resource::Command { id, .. } => format!("command:{id}"),
            Resource::Artifact { path, .. } => format!("artifact:{path}"),
        }
    }
}

/// What a probe found for the resource at the same index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observed {
    /// A file (or nothing) at the path.
    File {
        /// Current content when it exists; `None` when absent.
        #[serde(default)]
        content: Option<Vec<u8>>,
        /// Mode bits when it exists.
        mode: Option<u32>,
        /// `user:group` when it exists.
        owner: Option<String>,
    },
    /// A directory (or nothing).
    Directory {
        /// Exists as a directory.
        exists: bool,
        /// Mode bits.
        mode: Option<u32>,
        /// `user:group`.
        owner: Option<String>,
    },
    /// Package state.
    Package {
        /// Installed.
        installed: bool,
    },
    /// Service state.
    Service {
        /// The unit exists.
        exists: bool,
        /// Enabled.
        enabled: bool,
        /// Active.
        active: bool,
    },
    /// Current sysctl value; `None` when the key does not exist.
    Sysctl {
        /// Value.
        value: Option<String>,
    },
    /// Module state.
    KernelModule {
        /// Loaded.
        loaded: bool,
    },
    /// Swap state.
    Swap {
        /// Some swap is active.
        active: bool,
        /// /etc/fstab content.
        fstab: Vec<u8>,
    },
    /// A file's sha256 (never its bytes), for artifacts.
    Artifact {
        /// sha256 when a regular file exists at the path.
        sha256: Option<String>,
        /// Mode bits when it exists.
        mode: Option<u32>,
        /// `user:group` when it exists.
        owner: Option<String>,
    },
    /// Whether the command's guard says it is done.
    Command {
        /// Done already.
        satisfied: bool,
    },
}

/// One mutation. Undo steps are `Op`s too, so the journal is plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Write a file atomically.
    WriteFile {
        /// Path.
        path: String,
        /// Content.
        #[serde(with = "text_or_bytes")]
        content: Vec<u8>,
        /// Mode.
        mode: u32,
        /// `user:group`.
        owner: String,
    },
    /// Remove a file.
    RemoveFile {
        /// Path.
        path: String,
    },
    /// Create a directory (and parents) with mode and owner.
    EnsureDir {
        /// Path.
        path: String,
        /// Mode.
        mode: u32,
        /// `user:group`.
        owner: String,
    },
    /// Remove an empty directory.
    RemoveDir {
        /// Path.
        path: String,
    },
    /// `apt-get install` in one transaction.
    InstallPackages {
        /// Names.
        names: Vec<String>,
    },
    /// `apt-get purge` in one transaction.
    RemovePackages {
        /// Names.
        names: Vec<String>,
    },
    /// `systemctl enable`.
    EnableService {
        /// Unit.
        name: String,
    },
    /// `systemctl disable`.
    DisableService {
        /// Unit.
        name: String,
    },
    /// `systemctl start`.
    StartService {
        /// Unit.
        name: String,
    },
    /// `systemctl stop`.
    StopService {
        /// Unit.
        name: String,
    },
    /// `systemctl restart`.
    RestartService {
        /// Unit.
        name: String,
    },
    /// `sysctl -w`.
    SetSysctl {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// `modprobe`.
    LoadModule {
        /// Module.
        name: String,
    },
    /// `modprobe -r`.
    UnloadModule {
        /// Module.
        name: String,
    },
    /// `swapoff -a` and comment swap lines out of /etc/fstab.
    SwapOff,
    /// `swapon -a` (undo of `SwapOff`, after /etc/fstab is restored).
    SwapOn,
    /// Fetch a pinned artifact into the controller's download cache (once per run) and push
    /// it to `path`. Applied by the engine, which owns the cache.
    PutArtifact {
        /// Path on the host.
        path: String,
        /// What to push.
        pin: ArtifactPin,
        /// Mode.
        mode: u32,
        /// `user:group`.
        owner: String,
    },
    /// Copy the file at `path` to `path.kbz-prev` (before an artifact replaces it), so a
    /// rollback can restore the previous bytes without keeping them in the journal.
    SaveArtifact {
        /// Path.
        path: String,
    },
    /// Move `path.kbz-prev` back to `path` (undo of a replaced or removed artifact).
    RestoreArtifact {
        /// Path.
        path: String,
    },
    /// Run a script.
    Run {
        /// Identifier for messages.
        id: String,
        /// Script.
        script: String,
    },
}

impl Op {
    /// A one-line description for plans and errors (never the file content).
    pub fn describe(&self) -> String {
        match self {
            Op::WriteFile {
                path,
                mode,
                owner,
                content,
            } => {
                format!(
                    "write {path} ({} bytes, mode {mode:04o}, owner {owner})",
                    content.len()
                )
            }
            Op::RemoveFile { path } => format!("remove {path}"),
            Op::EnsureDir { path, mode, owner } => {
                format!("directory {path} (mode {mode:04o}, owner {owner})")
            }
            Op::RemoveDir { path } => format!("remove directory {path}"),
            Op::InstallPackages { names } => format!("install packages {}", names.join(" ")),
            Op::RemovePackages { names } => format!("purge packages {}", names.join(" ")),
            Op::EnableService { name } => format!("enable {name}"),
            Op::DisableService { name } => format!("disable {name}"),
            Op::StartService { name } => format!("start {name}"),
            Op::StopService { name } => format!("stop {name}"),
            Op::RestartService { name } => format!("restart {name}"),
            Op::SetSysctl { key, value } => format!("sysctl {key}={value}"),
            Op::LoadModule { name } => format!("load module {name}"),
            Op::UnloadModule { name } => format!("unload module {name}"),
            Op::SwapOff => "swap off".into(),
            Op::SwapOn => "swap on".into(),
            Op::PutArtifact {
                path, pin, mode, ..
            } => format!(
                "fetch {} and push it to {path} (mode {mode:04o})",
                pin.describe()
            ),
            Op::SaveArtifact { path } => format!("keep the previous {path} as {path}.kbz-prev"),
            Op::RestoreArtifact { path } => format!("restore {path} from {path}.kbz-prev"),
            Op::Run { id, .. } => format!("run {id}"),
        }
    }
}

/// Serializes bytes as a UTF-8 string when they are text, else as base64 under `b64:`.
mod text_or_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(v) {
            Ok(t) if !t.starts_with("b64:") => s.serialize_str(t),
            _ => s.serialize_str(&format!(
                "b64:{}",
                base64::engine::general_purpose::STANDARD.encode(v)
            )),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let t = String::deserialize(d)?;
        match t.strip_prefix("b64:") {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(serde::de::Error::custom),
            None => Ok(t.into_bytes()),
        }
    }
}
