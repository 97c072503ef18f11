//! kbz-backup: parses arguments, calls kbz-cli's backup library, and returns a documented
//! exit code (0 success, 1 a failure with its E-code, 3 unreachable, 64 bad input; see
//! `EXIT CODES` in `--help`).

use kbz_backup::{Cli, Command, ScheduleAction};
use kbz_cli::backup::{self, restore, RunOptions};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: Cli = kbz_cli::args::parse();
    let c = &cli.common;
    let code = match cli.command {
        Command::Run {
            component,
            full,
            diff,
            prune,
        } => backup::run(
            c,
            &RunOptions {
                component,
                kind: backup::kind(full, diff),
                prune,
            },
        ),
        Command::List => backup::list(c),
        Command::Verify { id } => backup::verify(c, id.as_deref()),
        Command::Restore {
            component,
            at,
            id,
            force,
            dry_run,
        } => restore::restore(
            c,
            &restore::RestoreOptions {
                component,
                at,
                id,
                force,
                dry_run,
            },
        ),
        Command::Drill { component } => backup::drill(c, component.as_deref()),
        Command::Prune => backup::prune(c),
        Command::Schedule { action } => match action {
            ScheduleAction::Install { systemd, root } => {
                backup::schedule_install(c, &root, systemd)
            }
            ScheduleAction::Remove { root } => backup::schedule_remove(c, &root),
            ScheduleAction::Show { root } => backup::schedule_show(c, &root),
        },
    };
    ExitCode::from(code)
}
