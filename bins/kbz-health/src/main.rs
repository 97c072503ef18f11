//! kbz-health: parses arguments, calls kbz-cli's health library, and returns a documented
//! exit code (0 healthy, 1 degraded, 2 down, 3 unreachable, 64 bad input; see `EXIT CODES`
//! in `--help`).

use kbz_cli::health::command;
use kbz_health::{Cli, Command, TimerAction};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: Cli = kbz_cli::args::parse();
    let (c, o) = (&cli.common, &cli.options);
    let code = match &cli.command {
        None => command::once(c, o),
        Some(Command::Serve { listen }) => command::serve(c, o, listen),
        Some(Command::Ports) => command::ports(c, o),
        Some(Command::Timer {
            action: TimerAction::Install { root, every },
        }) => command::timer_install(c, o, root, every),
        Some(Command::Timer {
            action: TimerAction::Remove { root },
        }) => command::timer_remove(c, root),
    };
    ExitCode::from(code)
}
