//! Plans as data: the diff of desired resources against observed state, as a list of
//! `Change`s, each with the operation, its undo steps and (for files) a unified diff.

use serde::Serialize;
use std::collections::BTreeSet;

use crate::resource::{Observed, Op, Resource};
use crate::shell::normalize_ws;

/// One operation the engine will perform, with what undoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Resource id (`file:/etc/hosts`).
    pub resource: String,
    /// The operation (in a report: file contents left out, only their size is shown).
    #[serde(serialize_with = "public_op")]
    pub op: Op,
    /// Steps that undo it, run in order on rollback.
    #[serde(skip)]
    pub undo: Vec<Op>,
    /// File changes: rendered as a unified diff (secrets masked) only when shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<FileDiff>,
}

/// An operation as reports show it: a file's content is replaced by its size (the masked
/// diff shows what changes; a report is printed and piped into CI logs and tickets).
fn public_op<S: serde::Serializer>(op: &Op, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    let mut v = serde_json::to_value(op).map_err(S::Error::custom)?;
    if let (Op::WriteFile { content, .. }, Some(m)) = (op, v.as_object_mut()) {
        m.remove("content");
        m.insert("bytes".into(), content.len().into());
    }
    v.serialize(s)
}

/// The before and after of one file. Rendering is deferred to display time, so planning a
/// large fleet does not pay for diffs nobody reads.
#[derive(Debug, Clone)]
pub struct FileDiff {
    path: String,
    old: Option<Vec<u8>>,
    new: Vec<u8>,
    old_mode: Option<u32>,
    new_mode: u32,
    redactor: std::sync::Arc<Redactor>,
}

impl PartialEq for FileDiff {
    fn eq(&self, o: &Self) -> bool {
        (
            &self.path,
            &self.old,
            &self.new,
            self.old_mode,
            self.new_mode,
        ) == (&o.path, &o.old, &o.new, o.old_mode, o.new_mode)
    }
}

impl Eq for FileDiff {}

impl Serialize for FileDiff {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.render())
    }
}

impl FileDiff {
    /// A unified diff (with a mode line when the mode changes), secrets masked.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(m) = self.old_mode {
            if m != self.new_mode && self.new_mode != 0 {
                out.push_str(&format!("mode {m:04o} -> {:04o}\n", self.new_mode));
            }
        }
        let old_text = self
            .old
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let new_text = String::from_utf8_lossy(&self.new);
        if old_text != new_text {
            let d = similar::TextDiff::from_lines(old_text.as_ref(), new_text.as_ref());
            let from = if self.old.is_some() {
                format!("a{}", self.path)
            } else {
                "/dev/null".into()
            };
            out.push_str(
                &d.unified_diff()
                    .context_radius(2)
                    .header(&from, &format!("b{}", self.path))
                    .to_string(),
            );
        }
        self.redactor.redact(&out)
    }
}

/// The plan for one component on one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    /// Inventory hostname.
    pub host: String,
    /// Module number.
    pub module: u8,
    /// Component name.
    pub component: String,
    /// The host could not be reached and was planned as fresh.
    pub unreachable: bool,
    /// Changes in order.
    pub changes: Vec<Change>,
}

/// A whole run's plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// One entry per (component, host).
    pub hosts: Vec<HostPlan>,
}

impl Plan {
    /// Total operations.
    pub fn operations(&self) -> usize {
        self.hosts.iter().map(|h| h.changes.len()).sum()
    }

    /// Distinct hosts with at least one operation.
    pub fn hosts_changed(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| !h.changes.is_empty())
            .map(|h| h.host.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Human rendering: per host and module, each operation, file diffs indented, then the total.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for hp in &self.hosts {
            let note = if hp.unreachable {
                " (not reached: planned as a fresh host)"
            } else {
                ""
            };
            out.push_str(&format!(
                "== {} · module {} {}{}: {} operation(s)\n",
                hp.host,
                hp.module,
                hp.component,
                note,
                hp.changes.len()
            ));
            for c in &hp.changes {
                out.push_str(&format!("  ~ {}\n", c.op.describe()));
                if let Some(d) = &c.diff {
                    for l in d.render().lines() {
                        out.push_str(&format!("      {l}\n"));
                    }
                }
            }
        }
        out.push_str(&format!(
            "{} operations would change on {} hosts\n",
            self.operations(),
            self.hosts_changed()
        ));
        out
    }
}

pub use crate::redact::Redactor;

fn chmod_chown(path: &str, mode: u32, owner: &str) -> String {
    let p = crate::shell::quote(path);
    format!(
        "chmod {mode:o} {p} && chown {} {p}",
        crate::shell::quote(owner)
    )
}

/// Diffs desired resources against what the probe observed, in declaration order.
/// Packages to install are batched into one operation at the first package's position;
/// services listed with `restart_on` are restarted when one of those files changes.
pub fn diff(
    desired: &[Resource],
    observed: &[Observed],
    redactor: &std::sync::Arc<Redactor>,
) -> Vec<Change> {
    diff_after(desired, observed, redactor, &BTreeSet::new())
}

/// [`diff`] on a host where `changed_before` (file paths) were already changed earlier in
/// the run (by the packages-first phase): running services whose `restart_on` names one of
/// them are restarted as if the file had changed in this diff. A service whose unit did not
/// exist when it was observed came with a package that phase installed after those files
/// were written, so its first start already read them: it is started, not restarted,
/// unless a file of its own diff changed.
pub fn diff_after(
    desired: &[Resource],
    observed: &[Observed],
    redactor: &std::sync::Arc<Redactor>,
    changed_before: &BTreeSet<String>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut to_install = Vec::new();
    let mut to_remove = Vec::new();
    let mut pkg_slot = None;
    // Files this diff changes (`changed_before` holds the phase's).
    let mut changed_files = BTreeSet::new();
    let mut restarts = Vec::new();

    for (r, o) in desired.iter().zip(observed) {
        match (r, o) {
            (
                Resource::File {
                    path,
                    content,
                    mode,
                    owner,
                    present,
                },
                Observed::File {
                    content: cur,
                    mode: cur_mode,
                    owner: cur_owner,
                },
            ) => {
                if *present {
                    let same = cur.as_deref() == Some(content.as_slice())
                        && *cur_mode == Some(*mode)
                        && cur_owner.as_deref() == Some(owner.as_str());
                    if !same {
                        let undo = match (cur, cur_mode, cur_owner) {
                            (Some(c), Some(m), Some(ow)) => vec![Op::WriteFile {
                                path: path.clone(),
                                content: c.clone(),
                                mode: *m,
                                owner: ow.clone(),
                            }],
                            _ => vec![Op::RemoveFile { path: path.clone() }],
                        };
                        changed_files.insert(path.clone());
                        changes.push(Change {
                            resource: r.id(),
                            op: Op::WriteFile {
                                path: path.clone(),
                                content: content.clone(),
                                mode: *mode,
                                owner: owner.clone(),
                            },
                            undo,
                            diff: Some(file_diff(
                                path,
                                cur.as_deref(),
                                content,
                                *cur_mode,
                                *mode,
                                redactor,
                            )),
                        });
                    }
                } else if let (Some(c), Some(m), Some(ow)) = (cur, cur_mode, cur_owner) {
                    changed_files.insert(path.clone());
                    changes.push(Change {
                        resource: r.id(),
                        op: Op::RemoveFile { path: path.clone() },
                        undo: vec![Op::WriteFile {
                            path: path.clone(),
                            content: c.clone(),
                            mode: *m,
                            owner: ow.clone(),
                        }],
                        diff: Some(file_diff(path, Some(c), &[], Some(*m), 0, redactor)),
                    });
                }
            }
            (
                Resource::Directory { path, mode, owner },
                Observed::Directory {
                    exists,
                    mode: cm,
                    owner: co,
                },
            ) => {
                if !*exists {
                    changes.push(Change {
                        resource: r.id(),
                        op: Op::EnsureDir {
                            path: path.clone(),
                            mode: *mode,
                            owner: owner.clone(),
                        },
                        undo: vec![Op::RemoveDir { path: path.clone() }],
                        diff: None,
                    });
                } else if *cm != Some(*mode) || co.as_deref() != Some(owner.as_str()) {
                    changes.push(Change {
                        resource: r.id(),
                        op: Op::EnsureDir {
                            path: path.clone(),
                            mode: *mode,
                            owner: owner.clone(),
                        },
                        undo: vec![Op::EnsureDir {
                            path: path.clone(),
                            mode: cm.unwrap_or(0o755),
                            owner: co.clone().unwrap_or_else(|| "root:root".into()),
                        }],
                        diff: None,
                    });
                }
            }
            (Resource::Package { name, present }, Observed::Package { installed }) => {
                if pkg_slot.is_none() {
                    pkg_slot = Some(changes.len());
                }
                if *present && !*installed {
                    to_install.push(name.clone());
                } else if !*present && *installed {
                    to_remove.push(name.clone());
                }
            }
            (
                Resource::Service {
                    name,
                    enabled,
                    running,
                    restart_on,
                },
                Observed::Service {
                    exists,
                    enabled: ce,
                    active: ca,
                },
            ) => {
                if *enabled && !*ce {
                    changes.push(svc(
                        r,
                        Op::EnableService { name: name.clone() },
                        Op::DisableService { name: name.clone() },
                    ));
                } else if !*enabled && *ce {
                    changes.push(svc(
                        r,
                        Op::DisableService { name: name.clone() },
                        Op::EnableService { name: name.clone() },
                    ));
                }
                if *running && !*ca {
                    // Installing a package may start its daemon with the packaged config
                    // before kbz's files land: start by restarting, so the daemon always
                    // runs the files this plan writes.
                    let start = if restart_on.iter().any(|f| {
                        changed_files.contains(f) || (*exists && changed_before.contains(f))
                    }) {
                        Op::RestartService { name: name.clone() }
                    } else {
                        Op::StartService { name: name.clone() }
                    };
                    changes.push(svc(r, start, Op::StopService { name: name.clone() }));
                } else if !*running && *ca {
                    changes.push(svc(
                        r,
                        Op::StopService { name: name.clone() },
                        Op::StartService { name: name.clone() },
                    ));
                } else if *running && *ca && !restart_on.is_empty() {
                    restarts.push((r.id(), name.clone(), restart_on.clone()));
                }
            }
            (Resource::Sysctl { key, value }, Observed::Sysctl { value: cur })
                if cur.as_deref() != Some(normalize_ws(value).as_str()) =>
            {
                changes.push(Change {
                    resource: r.id(),
                    op: Op::SetSysctl {
                        key: key.clone(),
                        value: value.clone(),
                    },
                    undo: cur
                        .iter()
                        .map(|v| Op::SetSysctl {
                            key: key.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                    diff: None,
                });
            }
            (Resource::KernelModule { name }, Observed::KernelModule { loaded }) if !*loaded => {
                changes.push(Change {
                    resource: r.id(),
                    op: Op::LoadModule { name: name.clone() },
                    undo: vec![Op::UnloadModule { name: name.clone() }],
                    diff: None,
                });
            }
            (Resource::SwapOff, Observed::Swap { active, fstab }) => {
                let commented = comment_swap(fstab);
                if commented != *fstab {
                    changes.push(Change {
                        resource: r.id(),
                        op: Op::WriteFile {
                            path: "/etc/fstab".into(),
                            content: commented.clone(),
                            mode: 0o644,
                            owner: "root:root".into(),
                        },
                        undo: vec![Op::WriteFile {
                            path: "/etc/fstab".into(),
                            content: fstab.clone(),
                            mode: 0o644,
                            owner: "root:root".into(),
                        }],
                        diff: Some(file_diff(
                            "/etc/fstab",
                            Some(fstab),
                            &commented,
                            Some(0o644),
                            0o644,
                            redactor,
                        )),
                    });
                }
                if *active {
                    changes.push(Change {
                        resource: r.id(),
                        op: Op::SwapOff,
                        undo: vec![Op::SwapOn],
                        diff: None,
                    });
                }
            }
            (
                Resource::Command {
                    id, script, undo, ..
                },
                Observed::Command { satisfied },
            ) if !*satisfied => {
                changes.push(Change {
                    resource: r.id(),
                    op: Op::Run {
                        id: id.clone(),
                        script: script.clone(),
                    },
                    undo: undo
                        .iter()
                        .map(|u| Op::Run {
                            id: format!("undo {id}"),
                            script: u.clone(),
                        })
                        .collect(),
                    diff: None,
                });
            }
            (
                Resource::Artifact {
                    path,
                    pin,
                    mode,
                    owner,
                    present,
                },
                Observed::Artifact {
                    sha256,
                    mode: cur_mode,
                    owner: cur_owner,
                },
            ) => {
                let matches = sha256.as_deref() == Some(pin.sha256.as_str());
                let put = || Op::PutArtifact {
                    path: path.clone(),
                    pin: pin.clone(),
                    mode: *mode,
                    owner: owner.clone(),
                };
                let save = || Change {
                    resource: r.id(),
                    op: Op::SaveArtifact { path: path.clone() },
                    undo: Vec::new(),
                    diff: None,
                };
                match (present, sha256.is_some(), matches) {
                    (true, _, true) => {
                        if *cur_mode != Some(*mode) || cur_owner.as_deref() != Some(owner.as_str())
                        {
                            let old_mode = cur_mode.unwrap_or(0o644);
                            let old_owner = cur_owner.clone().unwrap_or_else(|| "root:root".into());
                            changes.push(Change {
                                resource: r.id(),
                                op: Op::Run {
                                    id: format!("mode {path}"),
                                    script: chmod_chown(path, *mode, owner),
                                },
                                undo: vec![Op::Run {
                                    id: format!("undo mode {path}"),
                                    script: chmod_chown(path, old_mode, &old_owner),
                                }],
                                diff: None,
                            });
                        }
                    }
                    (true, false, _) => {
                        changed_files.insert(path.clone());
                        changes.push(Change {
                            resource: r.id(),
                            op: put(),
                            undo: vec![Op::RemoveFile { path: path.clone() }],
                            diff: None,
                        });
                    }
                    (true, true, false) => {
                        changed_files.insert(path.clone());
                        changes.push(save());
                        changes.push(Change {
                            resource: r.id(),
                            op: put(),
                            undo: vec![Op::RestoreArtifact { path: path.clone() }],
                            diff: None,
                        });
                    }
                    (false, false, _) => {}
                    (false, true, true) => {
                        changed_files.insert(path.clone());
                        changes.push(Change {
                            resource: r.id(),
                            op: Op::RemoveFile { path: path.clone() },
                            undo: vec![Op::PutArtifact {
                                path: path.clone(),
                                pin: pin.clone(),
                                mode: cur_mode.unwrap_or(*mode),
                                owner: cur_owner.clone().unwrap_or_else(|| owner.clone()),
                            }],
                            diff: None,
                        });
                    }
                    (false, true, false) => {
                        // Bytes that are not the pinned ones cannot be fetched again: keep them
                        // as PATH.kbz-prev so a rollback can put them back.
                        changed_files.insert(path.clone());
                        changes.push(save());
                        changes.push(Change {
                            resource: r.id(),
                            op: Op::RemoveFile { path: path.clone() },
                            undo: vec![Op::RestoreArtifact { path: path.clone() }],
                            diff: None,
                        });
                    }
                }
            }
            // A probe that answers a different kind for a resource is a bug in the executor;
            // planning the resource as changed keeps the run honest rather than silent.
            _ => {}
        }
    }
    let slot = pkg_slot.unwrap_or(changes.len()).min(changes.len());
    let mut pkg_changes = Vec::new();
    if !to_install.is_empty() {
        pkg_changes.push(Change {
            resource: format!("packages:{}", to_install.join(",")),
            op: Op::InstallPackages {
                names: to_install.clone(),
            },
            undo: vec![Op::RemovePackages { names: to_install }],
            diff: None,
        });
    }
    if !to_remove.is_empty() {
        pkg_changes.push(Change {
            resource: format!("packages:{}", to_remove.join(",")),
            op: Op::RemovePackages {
                names: to_remove.clone(),
            },
            undo: vec![Op::InstallPackages { names: to_remove }],
            diff: None,
        });
    }
    changes.splice(slot..slot, pkg_changes);
    for (id, name, files) in restarts {
        if files
            .iter()
            .any(|f| changed_files.contains(f) || changed_before.contains(f))
        {
            // Undo of a restart is another restart once the old files are back; the engine
            // runs restart undos last.
            changes.push(Change {
                resource: id,
                op: Op::RestartService { name: name.clone() },
                undo: vec![Op::RestartService { name }],
                diff: None,
            });
        }
    }
    changes
}

fn svc(r: &Resource, op: Op, undo: Op) -> Change {
    Change {
        resource: r.id(),
        op,
        undo: vec![undo],
        diff: None,
    }
}

/// Comments out active swap entries in an fstab.
pub fn comment_swap(fstab: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(fstab);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !line.trim_start().starts_with('#') && fields.len() >= 3 && fields[2] == "swap" {
            out.push_str("#kbz swapoff# ");
        }
        out.push_str(line);
    }
    out.into_bytes()
}

fn file_diff(
    path: &str,
    old: Option<&[u8]>,
    new: &[u8],
    old_mode: Option<u32>,
    new_mode: u32,
    r: &std::sync::Arc<Redactor>,
) -> FileDiff {
    FileDiff {
        path: path.into(),
        old: old.map(<[u8]>::to_vec),
        new: new.to_vec(),
        old_mode,
        new_mode,
        redactor: r.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converged_state_plans_nothing() {
        let d = vec![
            Resource::file("/etc/a", "x", 0o644),
            Resource::package("curl"),
            Resource::service("ssh", &["/etc/a"]),
        ];
        let o = vec![
            Observed::File {
                content: Some(b"x".to_vec()),
                mode: Some(0o644),
                owner: Some("root:root".into()),
            },
            Observed::Package { installed: true },
            Observed::Service {
                exists: true,
                enabled: true,
                active: true,
            },
        ];
        assert!(diff(&d, &o, &std::sync::Arc::new(Redactor::default())).is_empty());
    }

    #[test]
    fn changed_file_restarts_its_service_and_undo_restores_bytes() {
        let d = vec![
            Resource::file("/etc/a", "new\n", 0o600),
            Resource::service("svc", &["/etc/a"]),
        ];
        let o = vec![
            Observed::File {
                content: Some(b"old\n".to_vec()),
                mode: Some(0o644),
                owner: Some("root:root".into()),
            },
            Observed::Service {
                exists: true,
                enabled: true,
                active: true,
            },
        ];
        let c = diff(&d, &o, &std::sync::Arc::new(Redactor::default()));
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0].undo,
            vec![Op::WriteFile {
                path: "/etc/a".into(),
                content: b"old\n".to_vec(),
                mode: 0o644,
                owner: "root:root".into()
            }]
        );
        assert_eq!(c[1].op, Op::RestartService { name: "svc".into() });
        let d0 = c[0].diff.as_ref().map(FileDiff::render).unwrap_or_default();
        assert!(
            d0.contains("-old") && d0.contains("+new") && d0.contains("mode 0644 -> 0600"),
            "{d0}"
        );
    }

    #[test]
    fn a_stopped_service_whose_files_change_is_restarted_not_just_started() {
        // The package install that precedes it may have started the daemon with its
        // packaged config; `start` would then leave that config running.
        let d = vec![
            Resource::package("haproxy"),
            Resource::file("/etc/haproxy/haproxy.cfg", "new", 0o640),
            Resource::service("haproxy", &["/etc/haproxy/haproxy.cfg"]),
        ];
        let o = vec![
            Observed::Package { installed: false },
            Observed::File {
                content: None,
                mode: None,
                owner: None,
            },
            Observed::Service {
                exists: false,
                enabled: false,
                active: false,
            },
        ];
        let c = diff(&d, &o, &std::sync::Arc::new(Redactor::default()));
        let ops: Vec<&Op> = c.iter().map(|c| &c.op).collect();
        assert!(
            ops.contains(&&Op::RestartService {
                name: "haproxy".into()
            }),
            "{ops:?}"
        );
        assert!(
            !ops.contains(&&Op::StartService {
                name: "haproxy".into()
            }),
            "{ops:?}"
        );
    }

    /// Files the packages-first phase wrote before the package that brought a unit: the
    /// unit's first start read them, so it is started; a unit that existed (stopped, or
    /// running) before the phase still restarts on them.
    #[test]
    fn a_unit_brought_by_the_packages_phase_starts_on_the_files_written_before_it() {
        let cfg = "/etc/rabbitmq/rabbitmq.conf";
        let d = vec![
            Resource::file(cfg, "new", 0o644),
            Resource::service("rabbitmq-server", &[cfg]),
        ];
        let same_file = Observed::File {
            content: Some(b"new".to_vec()),
            mode: Some(0o644),
            owner: Some("root:root".into()),
        };
        let service = |exists, active| Observed::Service {
            exists,
            enabled: exists,
            active,
        };
        let before: BTreeSet<String> = [cfg.to_string()].into();
        let ops = |svc: Observed| -> Vec<Op> {
            diff_after(
                &d,
                &[same_file.clone(), svc],
                &std::sync::Arc::new(Redactor::default()),
                &before,
            )
            .into_iter()
            .map(|c| c.op)
            .collect()
        };
        let name = || "rabbitmq-server".to_string();
        let new = ops(service(false, false));
        assert!(new.contains(&Op::StartService { name: name() }), "{new:?}");
        assert!(
            !new.contains(&Op::RestartService { name: name() }),
            "{new:?}"
        );
        let stopped = ops(service(true, false));
        assert!(
            stopped.contains(&Op::RestartService { name: name() }),
            "{stopped:?}"
        );
        let running = ops(service(true, true));
        assert_eq!(running, vec![Op::RestartService { name: name() }]);
        // Its own diff changing the file still restarts the new unit.
        let own = diff_after(
            &d,
            &[
                Observed::File {
                    content: None,
                    mode: None,
                    owner: None,
                },
                service(false, false),
            ],
            &std::sync::Arc::new(Redactor::default()),
            &before,
        );
        assert!(
            own.iter()
                .any(|c| c.op == Op::RestartService { name: name() }),
            "{own:?}"
        );
    }

    #[test]
    fn packages_are_batched_in_one_operation() {
        let d = vec![
            Resource::package("a"),
            Resource::package("b"),
            Resource::package("c"),
        ];
        let o = vec![
            Observed::Package { installed: false },
            Observed::Package { installed: true },
            Observed::Package { installed: false },
        ];
        let c = diff(&d, &o, &std::sync::Arc::new(Redactor::default()));
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].op,
            Op::InstallPackages {
                names: vec!["a".into(), "c".into()]
            }
        );
        assert_eq!(
            c[0].undo,
            vec![Op::RemovePackages {
                names: vec!["a".into(), "c".into()]
            }]
        );
    }

    #[test]
    fn diffs_mask_secrets() {
        let d = vec![Resource::file("/etc/p", "password: s3cretvalue\n", 0o600)];
        let o = vec![Observed::File {
            content: None,
            mode: None,
            owner: None,
        }];
        let c = diff(
            &d,
            &o,
            &std::sync::Arc::new(Redactor::new(["s3cretvalue".to_string()])),
        );
        let text = c[0].diff.as_ref().map(FileDiff::render).unwrap_or_default();
        assert!(
            !text.contains("s3cretvalue") && text.contains("****"),
            "{text}"
        );
    }

    #[test]
    fn swap_lines_are_commented_once() {
        let f = b"UUID=1 / ext4 defaults 0 1\nUUID=2 none swap sw 0 0\n";
        let once = comment_swap(f);
        assert_eq!(comment_swap(&once), once);
        assert!(String::from_utf8_lossy(&once).contains("#kbz swapoff# UUID=2"));
    }
}
