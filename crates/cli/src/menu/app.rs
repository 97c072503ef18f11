//! The menu's state and keys, without a terminal: what is on screen ([`View`]), what a key
//! does to it, and the [`Command`]s (probe, health, install, uninstall, backup, drill, quit)
//! the runner carries out. Nothing here touches a host; a command that changes one is only
//! returned after its confirmation (`y` for install, backup and drill, the cluster name
//! typed for uninstall).

use kbz_core::engine::Event;
use kbz_core::plan::Plan;
use kbz_errors::Code;

use super::probe::{ModuleRow, Probe};

/// Which list the arrow keys move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The module list.
    Modules,
    /// The host list.
    Hosts,
}

/// A scrollable page of text (plan, health, explanation, run result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Title of its frame.
    pub title: String,
    /// Its lines (already masked).
    pub lines: Vec<String>,
    /// The first line shown.
    pub scroll: usize,
}

/// One component's progress during an install or uninstall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// Module number.
    pub module: u8,
    /// Component.
    pub component: String,
    /// Hosts done.
    pub done: usize,
    /// Hosts in the step.
    pub hosts: usize,
    /// Hosts that failed.
    pub failed: Vec<String>,
}

/// What the screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Modules, hosts and actions.
    Main,
    /// The probe (or a health run) is under way.
    Busy(String),
    /// A scrollable page.
    Page(Page),
    /// The keyboard help.
    Help,
    /// Install confirmation: `y` applies, anything else cancels.
    ConfirmInstall {
        /// Modules to install.
        modules: Vec<String>,
        /// Operations the plan holds for them.
        operations: usize,
    },
    /// Uninstall confirmation: the cluster name must be typed.
    ConfirmUninstall {
        /// Modules to remove.
        modules: Vec<String>,
        /// What was typed so far.
        typed: String,
        /// The last attempt did not match.
        mismatch: bool,
    },
    /// Backup or drill confirmation: `y` runs kbz-backup, anything else cancels.
    ConfirmBackup {
        /// A restore drill (`kbz-backup drill`) rather than a backup (`kbz-backup run`).
        drill: bool,
    },
    /// Which code to explain (prefilled with the last one).
    ExplainPrompt {
        /// What was typed so far.
        typed: String,
    },
    /// An install or uninstall under way, then its outcome.
    Progress {
        /// `install` or `uninstall`.
        title: String,
        /// One bar per component started.
        bars: Vec<Bar>,
        /// The outcome once finished.
        outcome: Option<String>,
    },
}

/// What the runner must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Leave the menu.
    Quit,
    /// Probe again (read-only).
    Probe,
    /// Run the health checks (read-only).
    Health,
    /// Install these modules (confirmed).
    Install(Vec<String>),
    /// Uninstall these modules (confirmed by the cluster name).
    Uninstall(Vec<String>),
    /// Back up every component now (`kbz-backup run`, confirmed).
    Backup,
    /// Run a restore drill of every component (`kbz-backup drill`, confirmed).
    Drill,
}

/// A key, as the menu understands it (from crossterm's events, or a test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Backspace.
    Backspace,
    /// Tab.
    Tab,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Home.
    Home,
    /// End.
    End,
    /// F1.
    F1,
    /// Ctrl-C.
    Interrupt,
}

/// The whole menu state.
#[derive(Debug, Clone)]
pub struct App {
    /// The cluster's name (typed to confirm an uninstall).
    pub cluster: String,
    /// No host is contacted (`--offline`, the bundled example).
    pub offline: bool,
    /// Where the inputs come from (shown in the title).
    pub source: String,
    /// The last probe.
    pub probe: Option<Probe>,
    /// Selected module names.
    pub selected: Vec<String>,
    /// Cursor in the module list.
    pub module_cursor: usize,
    /// Cursor in the host list.
    pub host_cursor: usize,
    /// Which list moves.
    pub focus: Focus,
    /// What is on screen.
    pub view: View,
    /// The view to return to from help.
    pub behind_help: Option<Box<View>>,
    /// The status line.
    pub status: String,
    /// The last error code met (explained with `e`).
    pub last_code: Option<Code>,
    /// Lines of a page visible at once (set by the renderer from the terminal size).
    pub page_height: usize,
}

impl App {
    /// A menu before its first probe.
    pub fn new(cluster: &str, offline: bool, source: &str) -> Self {
        App {
            cluster: cluster.to_string(),
            offline,
            source: source.to_string(),
            probe: None,
            selected: Vec::new(),
            module_cursor: 0,
            host_cursor: 0,
            focus: Focus::Modules,
            view: View::Busy("probing the fleet (read-only)...".into()),
            behind_help: None,
            status: String::new(),
            last_code: None,
            page_height: 16,
        }
    }

    /// The module rows of the last probe.
    pub fn modules(&self) -> &[ModuleRow] {
        self.probe.as_ref().map(|p| &p.modules[..]).unwrap_or(&[])
    }

    /// The modules an action applies to: the selected ones, or the one under the cursor.
    pub fn targets(&self) -> Vec<String> {
        if !self.selected.is_empty() {
            return self
                .modules()
                .iter()
                .filter(|m| self.selected.contains(&m.name))
                .map(|m| m.name.clone())
                .collect();
        }
        self.modules()
            .get(self.module_cursor)
            .map(|m| vec![m.name.clone()])
            .unwrap_or_default()
    }

    /// A probe finished.
    pub fn probed(&mut self, p: Probe) {
        if let Some(c) = p.last_code {
            self.last_code = Some(c);
        }
        self.status = match &p.error {
            Some(e) => format!("the dry-run failed: {e} (e explains its code)"),
            None if self.offline => {
                "offline: no host is contacted; states are what a fresh host needs".into()
            }
            None => format!(
                "probed: {} operations would change {} hosts",
                p.report.plan.operations(),
                p.report.plan.hosts_changed()
            ),
        };
        self.module_cursor = self.module_cursor.min(p.modules.len().saturating_sub(1));
        self.host_cursor = self.host_cursor.min(p.hosts.len().saturating_sub(1));
        self.probe = Some(p);
        self.view = View::Main;
    }

    /// A page of text replaces the screen.
    pub fn show_page(&mut self, title: &str, text: &str) {
        self.view = View::Page(Page {
            title: title.to_string(),
            lines: text.lines().map(crate::ui::mask).collect(),
            scroll: 0,
        });
    }

    /// An engine event during an install or uninstall.
    pub fn progress(&mut self, e: &Event) {
        let View::Progress { bars, .. } = &mut self.view else {
            return;
        };
        match e {
            Event::ComponentStart {
                component,
                module,
                hosts,
            } => bars.push(Bar {
                module: *module,
                component: component.clone(),
                done: 0,
                hosts: *hosts,
                failed: Vec::new(),
            }),
            Event::HostDone { component, .. } => {
                if let Some(b) = bars.iter_mut().rev().find(|b| &b.component == component) {
                    b.done += 1;
                }
            }
            Event::HostFailed {
                component, host, ..
            } => {
                if let Some(b) = bars.iter_mut().rev().find(|b| &b.component == component) {
                    b.done += 1;
                    b.failed.push(host.clone());
                }
            }
            Event::Unreachable { .. } | Event::RollbackStart { .. } => {}
        }
    }

    /// An install or uninstall ended (`code` when it failed).
    pub fn finished(&mut self, outcome: String, code: Option<Code>) {
        if let Some(c) = code {
            self.last_code = Some(c);
        }
        if let View::Progress { outcome: o, .. } = &mut self.view {
            *o = Some(crate::ui::mask(&outcome));
        } else {
            self.status = crate::ui::mask(&outcome);
        }
    }

    /// The plan of the modules an action applies to, as text.
    pub fn plan_text(&self, modules: &[String]) -> String {
        let Some(p) = &self.probe else {
            return "no probe yet".into();
        };
        let plan = Plan {
            hosts: p
                .report
                .plan
                .hosts
                .iter()
                .filter(|h| modules.contains(&h.component))
                .cloned()
                .collect(),
        };
        plan.render()
    }

    fn operations(&self, modules: &[String]) -> usize {
        self.probe
            .as_ref()
            .map(|p| {
                p.report
                    .plan
                    .hosts
                    .iter()
                    .filter(|h| modules.contains(&h.component))
                    .map(|h| h.changes.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Handles one key; returns what the runner must do, if anything.
    pub fn key(&mut self, k: Key) -> Option<Command> {
        if k == Key::Interrupt {
            return Some(Command::Quit);
        }
        let typing = matches!(
            self.view,
            View::ConfirmUninstall { .. } | View::ExplainPrompt { .. }
        );
        if !typing && matches!(k, Key::Char('?') | Key::F1) {
            if self.view != View::Help {
                let behind = std::mem::replace(&mut self.view, View::Help);
                self.behind_help = Some(Box::new(behind));
            }
            return None;
        }
        match self.view.clone() {
            View::Main => self.main_key(k),
            View::Busy(_) => matches!(k, Key::Char('q')).then_some(Command::Quit),
            View::Help => {
                if matches!(k, Key::Esc | Key::Char('q') | Key::Enter) {
                    self.view = self.behind_help.take().map(|b| *b).unwrap_or(View::Main);
                }
                None
            }
            View::Page(mut page) => {
                let h = self.page_height.max(1);
                let max = page.lines.len().saturating_sub(h);
                match k {
                    Key::Esc | Key::Char('q') => {
                        self.view = View::Main;
                        return None;
                    }
                    Key::Down | Key::Char('j') => page.scroll = (page.scroll + 1).min(max),
                    Key::Up | Key::Char('k') => page.scroll = page.scroll.saturating_sub(1),
                    Key::PageDown | Key::Char(' ') => page.scroll = (page.scroll + h).min(max),
                    Key::PageUp => page.scroll = page.scroll.saturating_sub(h),
                    Key::Home | Key::Char('g') => page.scroll = 0,
                    Key::End | Key::Char('G') => page.scroll = max,
                    _ => {}
                }
                self.view = View::Page(page);
                None
            }
            View::ConfirmInstall { modules, .. } => {
                self.view = View::Main;
                if k == Key::Char('y') {
                    self.status = format!("installing {}...", modules.join(", "));
                    Some(Command::Install(modules))
                } else {
                    self.status = "install cancelled: nothing was changed".into();
                    None
                }
            }
            View::ConfirmBackup { drill } => {
                let what = if drill { "restore drill" } else { "backup" };
                if k == Key::Char('y') {
                    self.view = View::Busy(if drill {
                        "kbz-backup drill: every component's latest backup restored into a scratch instance...".into()
                    } else {
                        "kbz-backup run: backing up every component...".into()
                    });
                    Some(if drill {
                        Command::Drill
                    } else {
                        Command::Backup
                    })
                } else {
                    self.view = View::Main;
                    self.status = format!("{what} cancelled: nothing was done");
                    None
                }
            }
            View::ConfirmUninstall {
                modules, mut typed, ..
            } => match k {
                Key::Esc => {
                    self.view = View::Main;
                    self.status = "uninstall cancelled: nothing was changed".into();
                    None
                }
                Key::Enter if typed == self.cluster => {
                    self.view = View::Main;
                    self.status = format!("uninstalling {}...", modules.join(", "));
                    Some(Command::Uninstall(modules))
                }
                Key::Enter => {
                    self.view = View::ConfirmUninstall {
                        modules,
                        typed: String::new(),
                        mismatch: true,
                    };
                    None
                }
                Key::Backspace => {
                    typed.pop();
                    self.view = View::ConfirmUninstall {
                        modules,
                        typed,
                        mismatch: false,
                    };
                    None
                }
                Key::Char(c) if typed.len() < 64 => {
                    typed.push(c);
                    self.view = View::ConfirmUninstall {
                        modules,
                        typed,
                        mismatch: false,
                    };
                    None
                }
                _ => None,
            },
            View::ExplainPrompt { mut typed } => {
                match k {
                    Key::Esc => self.view = View::Main,
                    Key::Enter => match kbz_errors::explain(&typed) {
                        Ok(text) => self.show_page(&format!("explain {}", typed.trim()), &text),
                        Err(e) => {
                            self.view = View::Main;
                            self.status = e.to_string();
                        }
                    },
                    Key::Backspace => {
                        typed.pop();
                        self.view = View::ExplainPrompt { typed };
                    }
                    Key::Char(c) if typed.len() < 8 => {
                        typed.push(c);
                        self.view = View::ExplainPrompt { typed };
                    }
                    _ => {}
                }
                None
            }
            View::Progress { outcome, .. } => {
                if outcome.is_some() && matches!(k, Key::Enter | Key::Esc | Key::Char('q')) {
                    self.view = View::Busy("probing the fleet again (read-only)...".into());
                    return Some(Command::Probe);
                }
                None
            }
        }
    }

    fn main_key(&mut self, k: Key) -> Option<Command> {
        let modules = self.modules().len();
        let hosts = self.probe.as_ref().map(|p| p.hosts.len()).unwrap_or(0);
        match k {
            Key::Char('q') | Key::Esc => return Some(Command::Quit),
            Key::Tab => {
                self.focus = match self.focus {
                    Focus::Modules => Focus::Hosts,
                    Focus::Hosts => Focus::Modules,
                }
            }
            Key::Down | Key::Char('j') => match self.focus {
                Focus::Modules => {
                    self.module_cursor = (self.module_cursor + 1).min(modules.saturating_sub(1))
                }
                Focus::Hosts => {
                    self.host_cursor = (self.host_cursor + 1).min(hosts.saturating_sub(1))
                }
            },
            Key::Up | Key::Char('k') => match self.focus {
                Focus::Modules => self.module_cursor = self.module_cursor.saturating_sub(1),
                Focus::Hosts => self.host_cursor = self.host_cursor.saturating_sub(1),
            },
            Key::Char(' ') => {
                if let Some(m) = self
                    .modules()
                    .get(self.module_cursor)
                    .map(|m| m.name.clone())
                {
                    if let Some(i) = self.selected.iter().position(|s| *s == m) {
                        self.selected.remove(i);
                    } else {
                        self.selected.push(m);
                    }
                }
            }
            Key::Char('a') => {
                if self.selected.len() == modules {
                    self.selected.clear();
                } else {
                    self.selected = self.modules().iter().map(|m| m.name.clone()).collect();
                }
            }
            Key::Char('p') | Key::Enter => {
                let t = self.targets();
                let text = self.plan_text(&t);
                self.show_page(&format!("plan (dry-run): {}", t.join(", ")), &text);
            }
            Key::Char('i') => {
                let t = self.targets();
                let operations = self.operations(&t);
                if operations == 0 && !t.is_empty() {
                    self.status = format!(
                        "nothing to install: {} already in the desired state",
                        t.join(", ")
                    );
                } else if !t.is_empty() {
                    self.view = View::ConfirmInstall {
                        modules: t,
                        operations,
                    };
                }
            }
            Key::Char('u') => {
                let t = self.targets();
                if !t.is_empty() {
                    self.view = View::ConfirmUninstall {
                        modules: t,
                        typed: String::new(),
                        mismatch: false,
                    };
                }
            }
            Key::Char('h') => {
                self.view = View::Busy("running the health checks (read-only)...".into());
                return Some(Command::Health);
            }
            Key::Char('r') => {
                self.view = View::Busy("probing the fleet (read-only)...".into());
                return Some(Command::Probe);
            }
            Key::Char('b') => self.view = View::ConfirmBackup { drill: false },
            Key::Char('d') => self.view = View::ConfirmBackup { drill: true },
            Key::Char('e') => {
                self.view = View::ExplainPrompt {
                    typed: self.last_code.map(|c| c.to_string()).unwrap_or_default(),
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::probe::{HostRow, ModuleState};

    fn app() -> App {
        let mut a = App::new("example", true, "test");
        a.probed(Probe {
            modules: ["base", "keepalived"]
                .iter()
                .enumerate()
                .map(|(i, n)| ModuleRow {
                    module: i as u8 + 1,
                    name: n.to_string(),
                    hosts: 2,
                    state: ModuleState::NotReached { changes: 3 },
                })
                .collect(),
            hosts: vec![HostRow {
                hostname: "lb1".into(),
                ip: "192.0.2.11".into(),
                roles: "lb".into(),
                reached: None,
            }],
            report: Default::default(),
            health: None,
            last_code: None,
            error: None,
        });
        a
    }

    fn typed(a: &mut App, s: &str) -> Option<Command> {
        s.chars().filter_map(|c| a.key(Key::Char(c))).last()
    }

    #[test]
    fn uninstall_needs_the_cluster_name_typed_exactly() {
        let mut a = app();
        assert_eq!(a.key(Key::Char('u')), None);
        assert_eq!(typed(&mut a, "exampl"), None);
        assert_eq!(a.key(Key::Enter), None, "a wrong name must not uninstall");
        assert!(matches!(
            a.view,
            View::ConfirmUninstall { mismatch: true, .. }
        ));
        assert_eq!(a.key(Key::Enter), None, "an empty name must not uninstall");
        assert_eq!(typed(&mut a, "example"), None);
        assert_eq!(
            a.key(Key::Enter),
            Some(Command::Uninstall(vec!["base".into()]))
        );
        // Esc cancels without a command.
        a.key(Key::Char('u'));
        typed(&mut a, "example");
        assert_eq!(a.key(Key::Esc), None);
        assert_eq!(a.view, View::Main);
        assert!(a.status.contains("nothing was changed"));
    }

    #[test]
    fn install_needs_y_and_anything_else_cancels() {
        let mut a = app();
        a.key(Key::Char(' '));
        a.key(Key::Down);
        a.key(Key::Char(' '));
        // The probe planned nothing for them (an empty report): nothing to confirm.
        assert_eq!(a.key(Key::Char('i')), None);
        assert_eq!(a.view, View::Main);
        a.view = View::ConfirmInstall {
            modules: a.targets(),
            operations: 6,
        };
        assert_eq!(a.key(Key::Char('n')), None);
        assert_eq!(a.view, View::Main);
        a.view = View::ConfirmInstall {
            modules: a.targets(),
            operations: 6,
        };
        assert_eq!(
            a.key(Key::Char('y')),
            Some(Command::Install(vec!["base".into(), "keepalived".into()]))
        );
    }

    #[test]
    fn help_returns_to_where_it_was_opened_and_pages_scroll_within_bounds() {
        let mut a = app();
        a.page_height = 3;
        a.show_page("t", "1\n2\n3\n4\n5");
        a.key(Key::Char('?'));
        assert_eq!(a.view, View::Help);
        a.key(Key::Esc);
        a.key(Key::End);
        a.key(Key::Down);
        let View::Page(p) = &a.view else {
            panic!("{:?}", a.view)
        };
        assert_eq!(p.scroll, 2);
        a.key(Key::PageUp);
        let View::Page(p) = &a.view else {
            panic!("{:?}", a.view)
        };
        assert_eq!(p.scroll, 0);
    }

    #[test]
    fn backup_and_drill_run_only_after_y_and_explain_takes_a_code() {
        let mut a = app();
        assert_eq!(a.key(Key::Char('b')), None);
        assert_eq!(a.view, View::ConfirmBackup { drill: false });
        assert_eq!(a.key(Key::Char('n')), None);
        assert_eq!(a.view, View::Main);
        assert_eq!(a.status, "backup cancelled: nothing was done");
        a.key(Key::Char('b'));
        assert_eq!(a.key(Key::Char('y')), Some(Command::Backup));
        assert!(matches!(a.view, View::Busy(_)), "{:?}", a.view);
        a.show_page("backup", "etcd stored");
        a.key(Key::Esc);
        a.key(Key::Char('d'));
        assert_eq!(a.view, View::ConfirmBackup { drill: true });
        assert_eq!(a.key(Key::Char('y')), Some(Command::Drill));
        a.show_page("drill", "ok");
        a.key(Key::Esc);
        a.key(Key::Char('e'));
        typed(&mut a, &Code::E014.to_string());
        a.key(Key::Enter);
        let View::Page(p) = &a.view else {
            panic!("{:?}", a.view)
        };
        let code = Code::E014.to_string();
        assert!(p.lines.iter().any(|l| l.contains(&code)), "{p:?}");
    }
}
