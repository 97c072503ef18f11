//! Draws the menu's [`App`] with ratatui: the title bar, modules and hosts side by side, the
//! actions with their keys, the status line, and the pages, dialogs and progress over them.
//! Laid out for 80x24 (it stretches on larger terminals); with NO_COLOR no colour is used,
//! only reverse video and bold.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Gauge, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Focus, View};
use super::probe::ModuleState;

/// Colours, or none.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    /// Colour is allowed (NO_COLOR is not set).
    pub color: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    fn title(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Black).bg(Color::Cyan)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }

    fn state(&self, s: &ModuleState) -> Style {
        match s {
            ModuleState::Converged => self.fg(Color::Green),
            ModuleState::Drifted { .. } | ModuleState::NotInstalled { .. } => {
                self.fg(Color::Yellow)
            }
            ModuleState::Unhealthy { .. } => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            ModuleState::NotReached { .. } | ModuleState::NoHosts => self.fg(Color::DarkGray),
        }
    }
}

const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);

/// Draws the whole screen.
pub fn draw(f: &mut Frame, app: &mut App, t: Theme) {
    let area = f.area();
    let [title, body, actions, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(5),
        Constraint::Length(1),
    ])
    .areas(area);
    let source = if app.offline {
        format!("{} · offline", app.source)
    } else {
        app.source.clone()
    };
    let hosts = app.probe.as_ref().map(|p| p.hosts.len()).unwrap_or(0);
    f.render_widget(
        Paragraph::new(format!(
            " kbz-install menu · cluster {} · {hosts} hosts · {source}",
            app.cluster
        ))
        .style(t.title()),
        title,
    );
    f.render_widget(
        Paragraph::new(Span::raw(format!(" {}", app.status))),
        status,
    );
    draw_actions(f, actions, app);
    app.page_height = body.height.saturating_sub(2) as usize;
    match app.view.clone() {
        View::Page(p) => {
            let lines: Vec<Line> = p
                .lines
                .iter()
                .skip(p.scroll)
                .take(app.page_height)
                .map(|l| diff_line(l, t))
                .collect();
            let pos = format!(
                " {}-{} of {} ",
                (p.scroll + 1).min(p.lines.len()),
                (p.scroll + app.page_height).min(p.lines.len()),
                p.lines.len()
            );
            f.render_widget(
                Paragraph::new(lines).block(
                    Block::bordered()
                        .title(format!(" {} ", p.title))
                        .title_bottom(Line::from(pos).right_aligned()),
                ),
                body,
            );
            return;
        }
        View::Help => {
            f.render_widget(
                Paragraph::new(help_lines()).block(Block::bordered().title(" keys (Esc closes) ")),
                body,
            );
            return;
        }
        View::Progress {
            title,
            bars,
            outcome,
        } => {
            draw_progress(f, body, &title, &bars, outcome.as_deref(), t);
            return;
        }
        _ => {}
    }
    draw_main(f, body, app, t);
    match &app.view {
        View::Busy(what) => dialog(f, body, " working ", vec![Line::from(what.as_str())], 4),
        View::ConfirmInstall {
            modules,
            operations,
        } => {
            let mut l = vec![
                Line::from(format!("Install {} on the hosts:", modules.join(", "))),
                Line::from(format!("{operations} operation(s) will change hosts.")),
            ];
            if app.offline {
                l.push(Line::from("Offline: nothing can be applied from here."));
            }
            l.push(Line::from(""));
            l.push(Line::from("Apply? y = yes, any other key = no"));
            dialog(f, body, " confirm install ", l, 7);
        }
        View::ConfirmBackup { drill } => {
            let mut l = if *drill {
                vec![
                    Line::from("Run a restore drill of every component?"),
                    Line::from("`kbz-backup drill`: the latest backups restored into scratch"),
                    Line::from("instances on the backup host, compared, then removed."),
                ]
            } else {
                vec![
                    Line::from("Back up every component now?"),
                    Line::from("`kbz-backup run`: the backups go to the backup host's repository."),
                ]
            };
            if app.offline {
                l.push(Line::from("Offline: nothing can be run from here."));
            }
            l.push(Line::from(""));
            l.push(Line::from("Run? y = yes, any other key = no"));
            dialog(
                f,
                body,
                if *drill {
                    " confirm drill "
                } else {
                    " confirm backup "
                },
                l,
                7,
            );
        }
        View::ConfirmUninstall {
            modules,
            typed,
            mismatch,
        } => {
            let mut l = vec![
                Line::from(format!("Uninstall {} from every host?", modules.join(", "))),
                Line::from("This removes what kbz installed (in reverse module order)."),
                Line::from(format!(
                    "Type the cluster name `{}` and Enter; Esc cancels.",
                    app.cluster
                )),
                Line::from(format!("> {typed}_")),
            ];
            if *mismatch {
                l.push(Line::from(Span::styled(
                    "That is not the cluster name: nothing was changed.",
                    t.fg(Color::Red),
                )));
            }
            dialog(f, body, " confirm uninstall ", l, 8);
        }
        View::ExplainPrompt { typed } => dialog(
            f,
            body,
            " explain an error code ",
            vec![
                Line::from("The code to explain (e.g. E014), Enter; Esc cancels."),
                Line::from(format!("> {typed}_")),
            ],
            5,
        ),
        _ => {}
    }
}

fn draw_main(f: &mut Frame, body: Rect, app: &App, t: Theme) {
    let [left, right] =
        Layout::horizontal([Constraint::Length(45), Constraint::Min(20)]).areas(body);
    let border = |focus: Focus| {
        if app.focus == focus {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        }
    };
    let rows = left.height.saturating_sub(2) as usize;
    let modules: Vec<Line> = app
        .modules()
        .iter()
        .enumerate()
        .skip(app.module_cursor.saturating_sub(rows.saturating_sub(1)))
        .map(|(i, m)| {
            let mark = if app.selected.contains(&m.name) {
                "[x]"
            } else {
                "[ ]"
            };
            let line = Line::from(vec![
                Span::raw(format!(
                    "{mark} {:>2} {:<10} {:>2} ",
                    m.module, m.name, m.hosts
                )),
                Span::styled(m.state.label(), t.state(&m.state)),
            ]);
            if i == app.module_cursor && app.focus == Focus::Modules {
                line.style(SELECTED)
            } else {
                line
            }
        })
        .collect();
    f.render_widget(
        Paragraph::new(modules).block(
            Block::bordered()
                .title(" modules  (space selects) ")
                .border_style(border(Focus::Modules)),
        ),
        left,
    );
    let rows = right.height.saturating_sub(2) as usize;
    let hosts: Vec<Line> = app
        .probe
        .as_ref()
        .map(|p| &p.hosts[..])
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .skip(app.host_cursor.saturating_sub(rows.saturating_sub(1)))
        .map(|(i, h)| {
            let (mark, style) = match h.reached {
                None => ("-", t.fg(Color::DarkGray)),
                Some(true) => ("+", t.fg(Color::Green)),
                Some(false) => ("!", t.fg(Color::Red)),
            };
            let line = Line::from(vec![
                Span::styled(mark, style),
                Span::raw(format!(" {:<7} {:<11} {}", h.hostname, h.ip, h.roles)),
            ]);
            if i == app.host_cursor && app.focus == Focus::Hosts {
                line.style(SELECTED)
            } else {
                line
            }
        })
        .collect();
    f.render_widget(
        Paragraph::new(hosts).block(
            Block::bordered()
                .title(" hosts  (Tab) ")
                .border_style(border(Focus::Hosts)),
        ),
        right,
    );
}

fn draw_actions(f: &mut Frame, area: Rect, app: &App) {
    let key = |k: &'static str| Span::styled(k, Style::default().add_modifier(Modifier::BOLD));
    let targets = app.targets().join(", ");
    let lines = vec![
        Line::from(vec![
            key("p"),
            Span::raw(" plan  "),
            key("i"),
            Span::raw(" install  "),
            key("h"),
            Span::raw(" health  "),
            key("u"),
            Span::raw(" uninstall  "),
            key("e"),
            Span::raw(" explain code  "),
            key("r"),
            Span::raw(" re-probe"),
        ]),
        Line::from(vec![
            key("b"),
            Span::raw(" back up now  "),
            key("d"),
            Span::raw(" restore drill (kbz-backup)"),
        ]),
        Line::from(vec![
            key("?"),
            Span::raw(" help  "),
            key("q"),
            Span::raw(" quit  "),
            Span::raw(format!("· acts on: {targets}")),
        ]),
    ];
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" actions ")),
        area,
    );
}

fn draw_progress(
    f: &mut Frame,
    body: Rect,
    title: &str,
    bars: &[super::app::Bar],
    outcome: Option<&str>,
    t: Theme,
) {
    let block = Block::bordered().title(format!(" {title} "));
    let inner = block.inner(body);
    f.render_widget(block, body);
    let mut y = inner.y;
    for b in bars {
        if y >= inner.bottom() {
            break;
        }
        let ratio = if b.hosts == 0 {
            1.0
        } else {
            (b.done as f64 / b.hosts as f64).min(1.0)
        };
        let failed = if b.failed.is_empty() {
            String::new()
        } else {
            format!(" failed: {}", b.failed.join(","))
        };
        f.render_widget(
            Gauge::default()
                .gauge_style(t.fg(Color::Cyan))
                .use_unicode(false)
                .ratio(ratio)
                .label(format!(
                    "{:>2} {} {}/{} hosts{failed}",
                    b.module, b.component, b.done, b.hosts
                )),
            Rect::new(inner.x, y, inner.width, 1),
        );
        y += 1;
    }
    if let Some(o) = outcome {
        let rest = Rect::new(
            inner.x,
            y + 1,
            inner.width,
            inner.bottom().saturating_sub(y + 1),
        );
        let mut l: Vec<Line> = o.lines().map(|s| Line::from(s.to_string())).collect();
        l.push(Line::from(""));
        l.push(Line::from("Enter probes the fleet again."));
        f.render_widget(Paragraph::new(l).wrap(Wrap { trim: false }), rest);
    }
}

fn diff_line(l: &str, t: Theme) -> Line<'static> {
    let body = l.trim_start();
    let style = if body.starts_with("+++") || body.starts_with("---") || body.starts_with("@@") {
        t.fg(Color::Cyan)
    } else if body.starts_with('+') {
        t.fg(Color::Green)
    } else if body.starts_with('-') {
        t.fg(Color::Red)
    } else if l.starts_with("==") {
        Style::default().add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    };
    Line::from(Span::styled(l.to_string(), style))
}

fn dialog(f: &mut Frame, body: Rect, title: &str, lines: Vec<Line>, height: u16) {
    let w = body.width.min(70);
    let h = height.min(body.height);
    let area = Rect::new(
        body.x + (body.width - w) / 2,
        body.y + (body.height - h) / 2,
        w,
        h,
    );
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title.to_string())),
        area,
    );
}

/// The keyboard help, one key a line.
pub fn help_lines() -> Vec<Line<'static>> {
    [
        "Up/Down or j/k  move in the list      Tab    modules <-> hosts",
        "Space           select a module       a      select all / none",
        "p or Enter      plan (dry-run) of the selected modules, with file diffs",
        "i               install the selected modules (asks y first)",
        "h               health checks (read-only, kbz-health's checks)",
        "u               uninstall the selected modules (type the cluster name)",
        "e               explain an error code (the last one met, or type one)",
        "r               probe again (a dry-run plan + health, read-only)",
        "b, d            back up every component now / restore drill (asks y first)",
        "In a page       Up/Down j/k, PgUp/PgDn Space, Home/End g/G; Esc back",
        "?  F1           this help              q  Esc  quit (back in a page)",
        "",
        "Nothing changes a host without a confirmation; --offline contacts none.",
    ]
    .into_iter()
    .map(Line::from)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::app::Key;
    use crate::menu::probe::{HostRow, ModuleRow, Probe};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(app: &mut App) -> String {
        let mut term = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        term.draw(|f| draw(f, app, Theme { color: false }))
            .expect("draw");
        let buf = term.backend().buffer().clone();
        (0..24)
            .map(|y| {
                (0..80)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_main_screen_fits_80x24_with_every_action_visible() {
        let mut app = App::new("example", true, "bundled example");
        app.probed(Probe {
            modules: (1..=7)
                .map(|i| ModuleRow {
                    module: i,
                    name: format!("module{i}"),
                    hosts: 14,
                    state: ModuleState::NotReached { changes: 120 },
                })
                .collect(),
            hosts: (1..=14)
                .map(|i| HostRow {
                    hostname: format!("host{i}"),
                    ip: format!("192.0.2.{i}"),
                    roles: "etcd,postgres,redis".into(),
                    reached: None,
                })
                .collect(),
            report: Default::default(),
            health: None,
            last_code: None,
            error: None,
        });
        let s = screen(&mut app);
        for want in [
            "p plan",
            "i install",
            "h health",
            "u uninstall",
            "e explain",
            "? help",
            "q quit",
            "back up now",
            "host14",
            "not reached (120 ops)",
        ] {
            assert!(s.contains(want), "{want} missing:\n{s}");
        }
        app.key(Key::Char('?'));
        let s = screen(&mut app);
        assert!(s.contains("type the cluster name"), "{s}");
    }
}
