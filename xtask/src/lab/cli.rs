//! The `cargo xtask lab` command line: a thin layer over the lab API.

use super::*;

/// `cargo xtask lab` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum LabCommand {
    /// Boot N hosts (building the cached base root once) and write target/lab/servers.tsv,
    /// kbz.toml and known_hosts.
    Up {
        /// Number of hosts.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=MAX_HOSTS as i64))]
        hosts: u8,
    },
    /// Remove everything the lab created, then verify nothing is left (no-op if no lab is up).
    Down,
    /// Each host: address, whether it runs, whether SSH answers. Exit 1 unless all are up.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the lab's files and hosts as JSON.
    Info,
    /// Run a command on a host over SSH (a login shell if no command); its exit code is ours.
    Exec {
        /// Host: kbzlab-hN, hN, N or its address.
        host: String,
        /// Command and arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Power cut: SIGKILL the host's init (everything in it dies at once).
    Kill {
        /// Host: kbzlab-hN, hN, N or its address.
        host: String,
    },
    /// Power a killed host on again (same disk) and wait for SSH.
    Start {
        /// Host: kbzlab-hN, hN, N or its address.
        host: String,
    },
    /// Network partition: take the host's bridge port down.
    Partition {
        /// Host: kbzlab-hN, hN, N or its address.
        host: String,
    },
    /// Undo `partition`.
    Heal {
        /// Host: kbzlab-hN, hN, N or its address.
        host: String,
    },
}

/// Runs one `cargo xtask lab` command.
pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        LabCommand::Up { hosts } => {
            let info = up(hosts)?;
            for h in &info.hosts {
                println!("  {:<10} {:<11} {}", h.name, h.ip, h.roles.join(","));
            }
            println!("inventory:   {}", info.servers_tsv.display());
            println!("config:      {}", info.config.display());
            println!("known_hosts: {}", info.known_hosts.display());
            println!("ssh key:     {}", info.key.display());
            println!("apt proxy:   {}", info.apt_proxy);
        }
        LabCommand::Down => down()?,
        LabCommand::Status { json } => {
            let Some(hosts) = status()? else {
                println!("no lab is up");
                return Ok(ExitCode::SUCCESS);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&hosts)?);
            } else {
                println!(
                    "{:<10} {:<11} {:<8} {:<4} NETWORK",
                    "HOST", "IP", "RUNNING", "SSH"
                );
                for h in &hosts {
                    println!(
                        "{:<10} {:<11} {:<8} {:<4} {}",
                        h.name,
                        h.ip,
                        yes_no(h.running),
                        yes_no(h.ssh),
                        if h.partitioned {
                            "partitioned"
                        } else {
                            "connected"
                        }
                    );
                }
            }
            if !hosts.iter().all(|h| h.running && h.ssh) {
                return Ok(ExitCode::FAILURE);
            }
        }
        LabCommand::Info => match info()? {
            Some(info) => println!("{}", serde_json::to_string_pretty(&info)?),
            None => bail!("no lab is up"),
        },
        LabCommand::Exec { host, command } => {
            let code = exec(&host, &command)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)));
        }
        LabCommand::Kill { host } => kill(&host)?,
        LabCommand::Start { host } => start(&host)?,
        LabCommand::Partition { host } => partition(&host)?,
        LabCommand::Heal { host } => heal(&host)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
