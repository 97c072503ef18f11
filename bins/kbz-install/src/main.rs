//! kbz-install: parses arguments, calls the kbz libraries (kbz-cli's `install` module), and
//! returns a documented exit code (see `EXIT CODES` in `--help`).

use kbz_cli::install;
use kbz_core::engine::Mode;
use kbz_install::{CacheAction, Cli, Command, NotifyAction};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: Cli = kbz_cli::args::parse();
    let (g, o) = (&cli.common, &cli.options);
    let code = match &cli.command {
        Some(Command::Explain { code }) => install::explain(code, g),
        Some(Command::Validate) => install::validate(g),
        Some(Command::Preflight) => install::preflight(g, o),
        Some(Command::Rollback) => install::rollback(g),
        Some(Command::Uninstall) => install::install(g, o, Mode::Uninstall),
        Some(Command::Menu) => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            kbz_cli::menu::run(g, o, kbz_cli::menu::MenuOptions { no_color })
        }
        Some(Command::Notify {
            action: NotifyAction::Test,
        }) => install::notify_test(g),
        Some(Command::Cache {
            action: CacheAction::List,
        }) => kbz_cli::cache::list(g),
        Some(Command::Cache {
            action: CacheAction::Prune { all },
        }) => kbz_cli::cache::prune(g, *all, o.dry_run),
        None => install::install(g, o, Mode::Install),
    };
    ExitCode::from(code)
}
