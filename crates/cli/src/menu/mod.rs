//! `kbz-install menu`: the terminal UI (ratatui + crossterm) for operators who start there.
//! It shows the modules with their state from a read-only probe ([`probe`]: the install's own
//! dry-run plus kbz-health's checks) and the hosts, and offers plan, install, health,
//! uninstall, back up now, restore drill and explain ([`app`] holds the state and keys,
//! [`view`] draws it). Backups and drills run the `kbz-backup` binary installed next to this
//! one with the same inputs, its output shown as a page. Nothing changes a host without a
//! confirmation (`y` for install, backup and drill, the cluster name typed for uninstall);
//! with `--offline` (and on the bundled example) no host is contacted at all.

pub mod app;
pub mod probe;
pub mod view;

use kbz_core::engine::{Event, Mode, Progress, RunOptions};
use kbz_core::executor::Connector;
use kbz_core::{Component, Context, Engine};
use kbz_errors::{Code, Diagnostic, HasCode};
use ratatui::crossterm::event::{self, KeyCode, KeyEventKind, KeyModifiers};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use crate::session::{self, prepare, Session};
use crate::{connect, exit, install, runtime, ui, Common};
use app::{App, Command, Key, View};

/// How the menu looks.
#[derive(Debug, Clone, Copy, Default)]
pub struct MenuOptions {
    /// No colour (the binary sets it from NO_COLOR).
    pub no_color: bool,
}

/// What a background job reports to the screen loop.
#[derive(Debug)]
enum Msg {
    Probed(Box<probe::Probe>),
    Health(Box<crate::health::HealthReport>),
    Event(Event),
    Finished(String, Option<Code>),
    Page(String, String, Option<Code>),
}

struct ChannelProgress(std::sync::Mutex<Sender<Msg>>);

impl Progress for ChannelProgress {
    fn event(&self, e: &Event) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(Msg::Event(e.clone()));
        }
    }
}

/// What the jobs share.
#[derive(Clone)]
struct Fleet {
    ctx: Context,
    components: Vec<Arc<dyn Component>>,
    connector: Arc<dyn Connector>,
    offline: bool,
    state_dir: Option<PathBuf>,
    forks: usize,
    skip_cleanup: bool,
    /// The inputs as kbz-backup takes them (`--inventory`, `--config`, `--state-dir`).
    inputs: Vec<std::ffi::OsString>,
}

/// `kbz-install menu`: runs the menu until the operator quits; returns an exit code.
pub fn run(g: &Common, o: &install::Options, m: MenuOptions) -> u8 {
    if g.json {
        let d = Diagnostic::new(Code::E010, "the menu is interactive: --json does not apply").hint(
            "use `kbz-install --dry-run --json` or `kbz-health --json` for machine-readable output",
        );
        ui::diagnostics(&[d], true);
        return exit::INPUT;
    }
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        let d = Diagnostic::new(Code::E010, "the menu needs a terminal on stdin and stdout")
            .hint("run it in a terminal (ssh -t), or use `kbz-install --dry-run` and `kbz-health`");
        ui::diagnostics(&[d], false);
        return exit::INPUT;
    }
    // Log lines on stderr would tear the screen; the log file keeps them.
    let g = Common {
        verbose: 0,
        ..g.clone()
    };
    let bundled = g.inventory.is_none();
    let offline = o.offline || bundled;
    let mode = if offline {
        session::Secrets::InMemory
    } else {
        session::Secrets::Persist
    };
    let components = kbz_stack::components();
    let Session { inputs: i, ctx, .. } = match prepare(&g, "kbz-install", &components, mode) {
        Ok(s) => s,
        Err(f) => return f.report(false),
    };
    let connector = match connect::connector(&i, &g, offline) {
        Ok(c) => c,
        Err(f) => return f.report(false),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(f) => return f.report(false),
    };
    let source = if i.bundled {
        "bundled example".to_string()
    } else {
        i.inventory.path.clone()
    };
    let mut inputs = Vec::new();
    for (flag, v) in [
        ("--inventory", &g.inventory),
        ("--config", &g.config),
        ("--state-dir", &g.state_dir),
    ] {
        if let Some(v) = v {
            inputs.push(flag.into());
            inputs.push(v.clone().into_os_string());
        }
    }
    let fleet = Fleet {
        inputs,
        forks: o.forks.unwrap_or(i.config.cluster.forks).max(1),
        ctx,
        components,
        connector,
        offline,
        state_dir: i.state_dir.clone(),
        skip_cleanup: o.skip_cleanup,
    };
    let mut app = App::new(&i.config.cluster.name, offline, &source);
    let mut term = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            let d = Diagnostic::new(Code::E010, format!("cannot set up the terminal: {e}"))
                .hint("run the menu in an interactive terminal");
            ui::diagnostics(&[d], false);
            return exit::INPUT;
        }
    };
    let (tx, rx) = channel();
    spawn_probe(&rt, &fleet, &tx);
    let result = run_loop(&mut term, &mut app, &rt, &fleet, &tx, &rx, m);
    ratatui::restore();
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            let d = Diagnostic::new(Code::E010, format!("the terminal failed: {e}"))
                .hint("run the menu again in an interactive terminal");
            ui::diagnostics(&[d], false);
            exit::FAILED
        }
    }
}

fn run_loop(
    term: &mut ratatui::DefaultTerminal,
    app: &mut App,
    rt: &tokio::runtime::Runtime,
    fleet: &Fleet,
    tx: &Sender<Msg>,
    rx: &Receiver<Msg>,
    m: MenuOptions,
) -> std::io::Result<()> {
    let theme = view::Theme { color: !m.no_color };
    loop {
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Probed(p) => app.probed(*p),
                Msg::Health(r) => {
                    if let Some(c) = r.failing().find_map(|c| c.code) {
                        app.last_code = Some(c);
                    }
                    let text = format!(
                        "{}\n{}",
                        crate::health::output::table(&r),
                        crate::health::output::summary(&r)
                    );
                    app.show_page("health (read-only)", &text);
                }
                Msg::Event(e) => app.progress(&e),
                Msg::Finished(text, code) => app.finished(text, code),
                Msg::Page(title, text, code) => {
                    if code.is_some() {
                        app.last_code = code;
                    }
                    app.show_page(&title, &text);
                }
            }
        }
        term.draw(|f| view::draw(f, app, theme))?;
        if !event::poll(Duration::from_millis(100))? {
            continue;
        }
        let event::Event::Key(k) = event::read()? else {
            continue;
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let key = match k.code {
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
            KeyCode::Char(c) => Key::Char(c),
            KeyCode::Enter => Key::Enter,
            KeyCode::Esc => Key::Esc,
            KeyCode::Backspace => Key::Backspace,
            KeyCode::Tab => Key::Tab,
            KeyCode::Up => Key::Up,
            KeyCode::Down => Key::Down,
            KeyCode::PageUp => Key::PageUp,
            KeyCode::PageDown => Key::PageDown,
            KeyCode::Home => Key::Home,
            KeyCode::End => Key::End,
            KeyCode::F(1) => Key::F1,
            _ => continue,
        };
        match app.key(key) {
            None => {}
            Some(Command::Quit) => return Ok(()),
            Some(Command::Probe) => spawn_probe(rt, fleet, tx),
            Some(Command::Health) => {
                if fleet.offline {
                    app.view = View::Main;
                    app.status = "health: offline, no host is asked (run without --offline)".into();
                } else {
                    let (f, tx) = (fleet.clone(), tx.clone());
                    let h = rt.handle().clone();
                    std::thread::spawn(move || {
                        let r = h.block_on(crate::health::check(
                            &f.ctx,
                            &f.components,
                            f.connector.as_ref(),
                        ));
                        let _ = tx.send(Msg::Health(Box::new(r)));
                    });
                }
            }
            Some(c @ (Command::Backup | Command::Drill)) => {
                let sub = if c == Command::Drill { "drill" } else { "run" };
                if fleet.offline {
                    app.view = View::Main;
                    app.status = format!(
                        "kbz-backup {sub}: offline, no host is contacted: nothing was done"
                    );
                } else {
                    let (f, tx) = (fleet.clone(), tx.clone());
                    std::thread::spawn(move || {
                        let (text, code) = kbz_backup(&f.inputs, sub);
                        let _ = tx.send(Msg::Page(format!("kbz-backup {sub}"), text, code));
                    });
                }
            }
            Some(Command::Install(mods)) => start_run(app, rt, fleet, tx, mods, Mode::Install),
            Some(Command::Uninstall(mods)) => start_run(app, rt, fleet, tx, mods, Mode::Uninstall),
        }
    }
}

/// Runs `kbz-backup SUB` (the binary next to this one) with the menu's inputs, stdin
/// closed and its output captured (no terminal: no progress bars); returns what it printed
/// with its exit status, and the first E-code in it.
fn kbz_backup(inputs: &[std::ffi::OsString], sub: &str) -> (String, Option<Code>) {
    let bin = match std::env::current_exe() {
        Ok(me) => me.with_file_name(format!("kbz-backup{}", std::env::consts::EXE_SUFFIX)),
        Err(e) => {
            return (
                format!("cannot find this program's own path: {e}: nothing was done"),
                None,
            )
        }
    };
    if !bin.is_file() {
        return (
            format!(
                "kbz-backup is not installed next to kbz-install ({} is missing): nothing was done.\nInstall both binaries in one directory (cargo install --path bins/kbz-backup).",
                bin.display()
            ),
            None,
        );
    }
    let out = std::process::Command::new(&bin)
        .args(inputs)
        .arg(sub)
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) => {
            let text = format!(
                "{}{}\nkbz-backup {sub} exited with {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
                o.status
                    .code()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "a signal".into())
            );
            let code = text
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| w.len() == 4 && w.starts_with('E'))
                .find_map(kbz_errors::parse_code);
            (text, if o.status.success() { None } else { code })
        }
        Err(e) => (
            format!("cannot run {}: {e}: nothing was done", bin.display()),
            None,
        ),
    }
}

fn spawn_probe(rt: &tokio::runtime::Runtime, fleet: &Fleet, tx: &Sender<Msg>) {
    let (f, tx) = (fleet.clone(), tx.clone());
    let h = rt.handle().clone();
    std::thread::spawn(move || {
        let p = h.block_on(probe::probe(
            &f.ctx,
            &f.components,
            f.connector.clone(),
            f.offline,
        ));
        let _ = tx.send(Msg::Probed(Box::new(p)));
    });
}

/// Starts a confirmed install or uninstall of `mods`, one module after the other (uninstall
/// in reverse order), with progress; offline nothing is started.
fn start_run(
    app: &mut App,
    rt: &tokio::runtime::Runtime,
    fleet: &Fleet,
    tx: &Sender<Msg>,
    mut mods: Vec<String>,
    mode: Mode,
) {
    let verb = match mode {
        Mode::Install => "install",
        Mode::Uninstall => "uninstall",
    };
    if fleet.offline {
        app.status = format!("{verb}: offline, no host is contacted: nothing was changed");
        return;
    }
    if mode == Mode::Uninstall {
        mods.reverse();
    }
    app.view = View::Progress {
        title: format!("{verb} {}", mods.join(", ")),
        bars: Vec::new(),
        outcome: None,
    };
    let (f, tx) = (fleet.clone(), tx.clone());
    let h = rt.handle().clone();
    std::thread::spawn(move || {
        let progress = Arc::new(ChannelProgress(std::sync::Mutex::new(tx.clone())));
        let mut changed = 0;
        let cache = f.state_dir.as_deref().and_then(crate::cache::open);
        // As the install does: every artifact of the selected modules is fetched before any
        // host changes.
        if let (Mode::Install, Some(cache)) = (mode, &cache) {
            let selected: Vec<_> = f
                .components
                .iter()
                .filter(|c| mods.iter().any(|m| m == c.name()))
                .cloned()
                .collect();
            let fetched = crate::cache::pins(&f.ctx, &selected)
                .and_then(|pins| crate::cache::prefetch(&h, cache, &pins));
            if let Err(failure) = fetched {
                let code = failure.diagnostics.first().map(|d| d.code);
                let text = format!("{verb} failed before any host changed:\n{failure}");
                let _ = tx.send(Msg::Finished(text, code));
                return;
            }
        }
        for m in &mods {
            let engine = Engine::new(f.ctx.clone(), f.components.clone(), f.connector.clone())
                .with_progress(progress.clone());
            let engine = match &cache {
                Some(c) => engine.with_artifacts(Arc::new(c.clone())),
                None => engine,
            };
            let opts = RunOptions {
                dry_run: false,
                forks: f.forks,
                only: Some(m.clone()),
                skip_cleanup: f.skip_cleanup,
                mode,
                state_dir: f.state_dir.clone(),
                ..RunOptions::default()
            };
            match h.block_on(engine.run(&opts)) {
                Ok(r) => changed += r.changed(),
                Err(e) => {
                    let text = format!("{verb} of {m} failed:\n{}", e.diagnostic().render_plain());
                    let _ = tx.send(Msg::Finished(text, Some(e.code())));
                    return;
                }
            }
        }
        let _ = tx.send(Msg::Finished(
            format!("{verb} done: {changed} operation(s) applied"),
            None,
        ));
    });
}
