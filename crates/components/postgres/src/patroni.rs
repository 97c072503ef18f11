//! Which Patroni runs: a pinned release from PyPI (a pure-Python wheel, version and sha256
//! in [`DEFAULT_PATRONI_VERSION`] / [`DEFAULT_PATRONI_SHA256`], overridable in
//! `[artifacts.patroni]`), because Debian 12's Patroni 3.0.2 can overwrite a new leader's key
//! after a partition heals and so erase acknowledged commits (see docs/patroni-partition.md).
//!
//! The controller fetches and verifies the wheel (`pip:patroni` through kbz-exec's download
//! cache), the engine pushes it to each member as a [`Resource::Artifact`]; it is unpacked
//! into `/opt/kbz/patroni-<version>`, and `patroni` / `patronictl` wrappers in
//! `/usr/local/bin` run it with Debian's Python and Debian's packaged dependencies (Debian's
//! `patroni` package stays installed for them and for its unit). A drop-in points
//! `patroni.service` at the wrapper.

use kbz_core::artifact::ArtifactPin;
use kbz_core::shell::quote;
use kbz_core::{Context, Resource};

/// The Patroni release kbz installs unless `[artifacts.patroni]` says otherwise.
pub const DEFAULT_PATRONI_VERSION: &str = "4.1.5";
/// sha256 of `patroni-4.1.5-py3-none-any.whl`.
pub const DEFAULT_PATRONI_SHA256: &str =
    "7aad8c1539e6c51c269a8005169dd54ddc7668437b7900fa6099d7894e224c84";
/// The artifact's name in `[artifacts]`.
pub const ARTIFACT: &str = "patroni";
/// Where pushed artifacts are kept on the hosts.
pub const ARTIFACT_DIR: &str = "/opt/kbz/artifacts";
/// The wrapper `patroni.service` runs.
pub const PATRONI_BIN: &str = "/usr/local/bin/patroni";
/// The wrapper operators (and kbz's checks) run.
pub const PATRONICTL_BIN: &str = "/usr/local/bin/patronictl";
/// The drop-in that makes `patroni.service` run [`PATRONI_BIN`].
pub const DROPIN_PATH: &str = "/etc/systemd/system/patroni.service.d/kbz-patroni.conf";

/// The wheel's file name for a version.
pub fn wheel_file(version: &str) -> String {
    format!("patroni-{version}-py3-none-any.whl")
}

/// The directory a version is unpacked into.
pub fn install_dir(version: &str) -> String {
    format!("/opt/kbz/patroni-{version}")
}

/// The pin declared in code.
pub fn default_pin() -> ArtifactPin {
    ArtifactPin::new(
        ARTIFACT,
        DEFAULT_PATRONI_VERSION,
        DEFAULT_PATRONI_SHA256,
        "pip:patroni",
    )
}

/// The pin in force: the default or its `[artifacts.patroni]` override.
pub fn pin(ctx: &Context) -> ArtifactPin {
    ctx.config.artifact(&default_pin())
}

fn wrapper(a: &ArtifactPin, run: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # Managed by kbz (module 5, postgres): Patroni {v} from the pinned wheel {f}\n\
         # (sha256 {sha}), with Debian's Python and Debian's packaged dependencies.\n\
         PYTHONPATH={dir}${{PYTHONPATH:+:$PYTHONPATH}}\n\
         export PYTHONPATH\n\
         exec /usr/bin/python3 {run} \"$@\"\n",
        v = a.version,
        f = wheel_file(&a.version),
        sha = a.sha256,
        dir = install_dir(&a.version),
    )
}

/// The drop-in: Debian's unit (user, reload, kill mode) with kbz's Patroni.
pub fn dropin() -> String {
    format!(
        "# Managed by kbz (module 5, postgres): run the pinned Patroni, not Debian's 3.0.2.\n\
         [Service]\n\
         ExecStart=\n\
         ExecStart={PATRONI_BIN} /etc/patroni/config.yml\n"
    )
}

/// Where the wheel lands on a host.
pub fn wheel_path(a: &ArtifactPin) -> String {
    format!("{ARTIFACT_DIR}/{}", wheel_file(&a.version))
}

/// The resources that install the pinned Patroni (before the unit starts). The service
/// restarts when [`restart_paths`] change.
pub fn resources(ctx: &Context) -> Vec<Resource> {
    let a = pin(ctx);
    let wheel = wheel_path(&a);
    let dir = install_dir(&a.version);
    let marker = format!("{dir}/.kbz-sha256");
    vec![
        Resource::artifact(&wheel, &a, 0o644),
        Resource::Command {
            id: "patroni-unpack".into(),
            script: format!(
                "set -e\n\
                 [ \"$(sha256sum {w} | cut -d' ' -f1)\" = {sha} ]\n\
                 t={d}.kbz-new\n\
                 rm -rf \"$t\"\n\
                 mkdir -p \"$t\"\n\
                 python3 -m zipfile -e {w} \"$t\"\n\
                 chmod -R u=rwX,go=rX \"$t\"\n\
                 echo {sha} > \"$t/.kbz-sha256\"\n\
                 rm -rf {d}\n\
                 mv \"$t\" {d}\n",
                w = quote(&wheel),
                d = quote(&dir),
                sha = a.sha256,
            ),
            unless: Some(format!("grep -qx {} {}", a.sha256, quote(&marker))),
            creates: None,
            undo: Some(format!("rm -rf {}", quote(&dir))),
        },
        Resource::file(PATRONI_BIN, wrapper(&a, "-m patroni"), 0o755),
        Resource::file(
            PATRONICTL_BIN,
            wrapper(
                &a,
                "-c 'import sys; sys.argv[0] = \"patronictl\"; from patroni.ctl import ctl; sys.exit(ctl())'",
            ),
            0o755,
        ),
        Resource::file(DROPIN_PATH, dropin(), 0o644),
        Resource::Command {
            id: "patroni-unit-reload".into(),
            script: "systemctl daemon-reload".into(),
            // Skipped when the loaded unit already starts the wrapper.
            unless: Some(format!(
                "systemctl show -p ExecStart --value patroni.service | grep -qF {}",
                quote(&format!("argv[]={PATRONI_BIN} /etc/patroni/config.yml ;"))
            )),
            creates: None,
            undo: Some("systemctl daemon-reload".into()),
        },
    ]
}

/// Files whose change restarts Patroni (a new Patroni version needs a new process).
pub fn restart_paths() -> [&'static str; 2] {
    [PATRONI_BIN, DROPIN_PATH]
}

/// What uninstall removes: the wrappers, the drop-in and the wheel (the unpacked release
/// directory under /opt/kbz stays, like the data).
pub fn uninstall(ctx: &Context) -> Vec<Resource> {
    let a = pin(ctx);
    vec![
        Resource::absent_file(DROPIN_PATH),
        Resource::absent_file(PATRONI_BIN),
        Resource::absent_file(PATRONICTL_BIN),
        Resource::absent_artifact(&wheel_path(&a), &a),
    ]
}
