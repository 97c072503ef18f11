//! `cargo xtask docs-cli OUTDIR`: shell completions (clap_complete: bash, zsh, fish, elvish,
//! PowerShell) and man pages (clap_mangen: one per binary and subcommand, with the shared
//! exit-code table) for every binary in bins/, from the binaries' own clap definitions.

use anyhow::{Context, Result};
use clap_complete::Shell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `docs-cli` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write `completions/<shell>/` and `man/man1/`.
    pub outdir: PathBuf,
}

/// Every binary's clap command, by name.
pub fn binaries() -> Vec<clap::Command> {
    vec![
        kbz_install::command(),
        kbz_health::command(),
        kbz_failover::command(),
        kbz_backup::command(),
    ]
}

/// Runs `docs-cli`.
pub fn run(args: Args) -> Result<ExitCode> {
    let files = generate(&args.outdir)?;
    for f in &files {
        println!("{}", f.display());
    }
    println!(
        "{} files written under {}",
        files.len(),
        args.outdir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes completions for every shell and man pages for every binary under `out`; returns
/// the files written.
pub fn generate(out: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for cmd in binaries() {
        let name = cmd.get_name().to_string();
        for shell in [
            Shell::Bash,
            Shell::Zsh,
            Shell::Fish,
            Shell::Elvish,
            Shell::PowerShell,
        ] {
            let dir = out.join("completions").join(shell.to_string());
            fs_err::create_dir_all(&dir)?;
            let mut c = cmd.clone();
            let f = clap_complete::generate_to(shell, &mut c, &name, &dir)
                .with_context(|| format!("{shell} completions of {name} in {}", dir.display()))?;
            files.push(f);
        }
        let man = out.join("man").join("man1");
        fs_err::create_dir_all(&man)?;
        let before: Vec<PathBuf> = list(&man)?;
        clap_mangen::generate_to(cmd.clone(), &man)
            .with_context(|| format!("man pages of {name} in {}", man.display()))?;
        files.extend(list(&man)?.into_iter().filter(|f| !before.contains(f)));
    }
    Ok(files)
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs_err::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binary_gets_completions_for_every_shell_and_man_pages_with_the_exit_codes() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = generate(dir.path()).expect("generate");
        for bin in ["kbz-install", "kbz-health", "kbz-failover", "kbz-backup"] {
            for f in [
                format!("completions/bash/{bin}.bash"),
                format!("completions/zsh/_{bin}"),
                format!("completions/fish/{bin}.fish"),
                format!("completions/elvish/{bin}.elv"),
                format!("completions/powershell/_{bin}.ps1"),
                format!("man/man1/{bin}.1"),
            ] {
                let p = dir.path().join(&f);
                assert!(files.contains(&p), "{f} not written: {files:?}");
                assert!(p.metadata().expect("meta").len() > 100, "{f} is empty");
            }
            let man = fs_err::read_to_string(dir.path().join(format!("man/man1/{bin}.1")))
                .expect("man page");
            assert!(man.contains("EXIT CODES"), "{bin}.1 lacks the exit codes");
            for (code, _) in kbz_cli::exit::TABLE {
                assert!(
                    man.contains(&format!("  {code}  ")),
                    "{bin}.1 lacks exit code {code}"
                );
            }
        }
        // Subcommands have their own page; the menu's completion is there.
        assert!(dir.path().join("man/man1/kbz-install-menu.1").exists());
        assert!(dir
            .path()
            .join("man/man1/kbz-health-timer-install.1")
            .exists());
        let bash = fs_err::read_to_string(dir.path().join("completions/bash/kbz-install.bash"))
            .expect("bash");
        assert!(
            bash.contains("menu") && bash.contains("--offline"),
            "{bash}"
        );
    }
}
