//! kbz-failover: parses arguments, calls kbz-cli's failover library, and returns a
//! documented exit code (0 inside budget, 1 outside budget or a failed run; see `EXIT CODES`
//! in `--help`).

use kbz_cli::failover::{self, RunOptions};
use kbz_failover::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: Cli = kbz_cli::args::parse();
    let c = &cli.common;
    let code = match cli.command {
        Command::List => failover::list(c),
        Command::Run {
            scenario,
            runs,
            duration,
            writers,
            yes,
        } => failover::run(
            c,
            &RunOptions {
                scenario,
                runs,
                duration,
                writers,
                yes,
            },
        ),
    };
    ExitCode::from(code)
}
