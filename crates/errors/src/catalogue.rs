//! The catalogue itself: every code with its category, title, explanation and numbered fixes.

use serde::{Serialize, Serializer};
use std::fmt;

macro_rules! codes {
    ($($name:ident = $n:literal),* $(,)?) => {
        /// A catalogue code. `Display` prints `E002`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $(#[doc = stringify!($name)] $name),* }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$name),*];

            /// The number of the code (`E002` is 2).
            pub fn number(self) -> u16 {
                match self { $(Code::$name => $n),* }
            }

            /// The code for a number, if it is in the catalogue.
            pub fn from_number(n: u16) -> Option<Code> {
                match n { $($n => Some(Code::$name),)* _ => None }
            }
        }
    };
}

codes! {
    E001 = 1, E002 = 2, E003 = 3, E004 = 4, E005 = 5, E006 = 6, E007 = 7, E008 = 8, E009 = 9, E010 = 10,
    E011 = 11, E012 = 12, E013 = 13, E014 = 14, E015 = 15, E016 = 16, E017 = 17, E018 = 18, E019 = 19, E020 = 20,
    E021 = 21, E022 = 22, E023 = 23, E024 = 24, E025 = 25, E026 = 26, E027 = 27, E028 = 28, E029 = 29, E030 = 30,
    E031 = 31, E032 = 32, E033 = 33, E034 = 34, E035 = 35, E036 = 36, E037 = 37, E038 = 38, E039 = 39, E040 = 40,
    E041 = 41, E042 = 42, E043 = 43, E044 = 44, E045 = 45, E046 = 46, E047 = 47, E048 = 48, E049 = 49, E050 = 50,
    E051 = 51, E052 = 52, E053 = 53, E054 = 54, E055 = 55, E056 = 56, E057 = 57, E058 = 58, E059 = 59, E060 = 60,
    E061 = 61, E062 = 62, E063 = 63, E064 = 64, E065 = 65, E066 = 66, E067 = 67, E068 = 68,
    E071 = 71, E072 = 72,
    E076 = 76, E077 = 77, E078 = 78, E079 = 79, E080 = 80, E081 = 81,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E{:03}", self.number())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Entry {
    /// The code.
    pub code: Code,
    /// general, network, resources, components, backup, security.
    pub category: &'static str,
    /// A short title.
    pub title: &'static str,
    /// What the failure means and why it happens.
    pub explanation: &'static str,
    /// Numbered fixes, each with a real command where one helps.
    pub solutions: &'static [&'static str],
}

impl Entry {
    /// The full text printed by `kbz-install explain CODE`.
    pub fn render(&self) -> String {
        let mut out = format!("{} ({}): {}\n\n", self.code, self.category, self.title);
        for line in crate::diagnostic::wrap(self.explanation, 78) {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("\nHow to fix it:\n");
        for (i, s) in self.solutions.iter().enumerate() {
            out.push_str(&format!("  {}. {}\n", i + 1, s));
        }
        out
    }
}

/// The entry for a code.
pub fn lookup(code: Code) -> Option<&'static Entry> {
    CATALOGUE.iter().find(|e| e.code == code)
}

const fn e(
    code: Code,
    category: &'static str,
    title: &'static str,
    explanation: &'static str,
    solutions: &'static [&'static str],
) -> Entry {
    Entry {
        code,
        category,
        title,
        explanation,
        solutions,
    }
}

/// Every entry, in code order.
pub static CATALOGUE: &[Entry] = &[
    // General: input files and usage.
    e(
        Code::E001,
        "general",
        "Input file not found or unreadable",
        "kbz could not open a file it was told to read: the inventory (servers.tsv), the \
         configuration (kbz.toml) or another file named on the command line. Usually the path \
         has a typo, kbz-install was started from another directory (relative paths resolve \
         against the current directory), or the file exists but is not readable by the user \
         running kbz-install.",
        &[
            "Check that the file is where you think and readable: `ls -l servers.tsv kbz.toml`",
            "Pass the files explicitly, with absolute paths if in doubt: \
             `kbz-install validate --inventory /srv/kbz/servers.tsv --config /srv/kbz/kbz.toml`",
            "Make the file readable by your user: `chmod u+r servers.tsv`",
            "Start from the bundled examples and edit them: \
             `cp examples/servers.tsv examples/kbz.toml .`",
        ],
    ),
    e(
        Code::E002,
        "general",
        "Inventory line malformed",
        "A line of servers.tsv could not be split into its columns: hostname, ip, roles, then \
         optionally ssh_user, ssh_port and labels, separated by single tab characters. The usual \
         causes are spaces instead of tabs (many editors convert tabs), a missing or extra \
         column, or bytes that are not valid UTF-8 (a file saved as Latin-1, a stray binary \
         character). Comments starting with `#`, blank lines, a header row, CRLF line endings \
         and a UTF-8 BOM are all accepted.",
        &[
            "Show the tabs on the reported line (they print as `^I`): `sed -n '4p' servers.tsv | cat -A`",
            "Turn runs of spaces into tabs on every non-comment line: \
             `sed -i -E '/^#/!s/ +/\\t/g' servers.tsv`",
            "Find lines that are not valid UTF-8: `LC_ALL=C.UTF-8 grep -naxv '.*' servers.tsv`, \
             then convert the file: `iconv -f LATIN1 -t UTF-8 servers.tsv -o servers.utf8.tsv`",
            "Check the whole file again: `kbz-install validate --inventory servers.tsv`",
        ],
    ),
    e(
        Code::E003,
        "general",
        "Inventory is empty",
        "The inventory holds no host lines: the file is empty, or every line is a comment, \
         blank, or the header row. kbz needs at least one host, and a real cluster needs at \
         least three hosts for each quorum role.",
        &[
            "Count the host lines kbz sees: `grep -cvE '^[[:space:]]*(#|$)' servers.tsv`",
            "Start from the example fleet and edit hostnames and addresses: \
             `cp examples/servers.tsv servers.tsv`",
            "Make sure you point at the file you edited: \
             `kbz-install validate --inventory ./servers.tsv`",
        ],
    ),
    e(
        Code::E004,
        "general",
        "Duplicate hostname or IP address",
        "Two inventory lines use the same hostname or the same IP address. Each host must \
         appear once, because hostnames become /etc/hosts entries and cluster member names and \
         IPs are SSH targets and peer addresses. A duplicate usually comes from copying a line \
         and forgetting to edit it, or from listing one host twice to give it more roles.",
        &[
            "List repeated hostnames and IPs: `grep -v '^#' servers.tsv | cut -f1 | sort | uniq -d` \
             and `grep -v '^#' servers.tsv | cut -f2 | sort | uniq -d`",
            "Give a host several roles on one line instead of repeating it, as a comma list: \
             `db1<TAB>10.0.0.11<TAB>etcd,postgres,redis`",
            "Check the file again: `kbz-install validate --inventory servers.tsv`",
        ],
    ),
    e(
        Code::E005,
        "general",
        "Invalid field value",
        "A field of an inventory line holds a value kbz cannot use: an IP address that does not \
         parse (write IPv4 as 192.0.2.10, IPv6 without brackets), a hostname that is not a valid \
         DNS name (letters, digits and hyphens, labels of 1-63 characters not starting or ending \
         with a hyphen), an ssh_port outside 1-65535, or a label that is not `key=value`. The \
         message names the column and the line.",
        &[
            "Print the columns of the reported line one per row: \
             `awk -F'\\t' 'NR==4 {for (i = 1; i <= NF; i++) print i \": \" $i}' servers.tsv`",
            "Look up the host's real private address on the host itself: `ip -brief address`",
            "Write labels as a comma list of key=value pairs without spaces, e.g. `zone=a,rack=r1`, \
             then run `kbz-install validate --inventory servers.tsv`",
        ],
    ),
    e(
        Code::E006,
        "general",
        "Unknown role",
        "The roles column names a role kbz does not know. Valid roles are lb, etcd, postgres, \
         redis, rabbitmq, mariadb, proxysql, minio, k8s-master, k8s-worker, monitoring and \
         backup, separated by commas without spaces. The message suggests the nearest valid \
         role; the cause is almost always a typo such as `postgress` or `k8s_master`.",
        &[
            "Replace the misspelt role with the suggested one: \
             `sed -i 's/\\bpostgress\\b/postgres/' servers.tsv`",
            "List every role in use and how often: \
             `grep -v '^#' servers.tsv | cut -f3 | tr ',' '\\n' | sort | uniq -c`",
            "Check the file again: `kbz-install validate --inventory servers.tsv`",
        ],
    ),
    e(
        Code::E007,
        "general",
        "Quorum role needs an odd count of at least 3",
        "Roles that form a quorum cluster (etcd, postgres, redis, rabbitmq, mariadb and \
         k8s-master) must be given to an odd number of hosts, at least three. One member has no \
         failover, and an even count adds no tolerance (two members survive no failure, four \
         survive only one) while a network split can leave neither half with a majority, so the \
         cluster stops taking writes. kbz refuses such layouts rather than install a cluster \
         that cannot survive the loss of a member.",
        &[
            "Count the hosts per role: \
             `grep -v '^#' servers.tsv | cut -f3 | tr ',' '\\n' | sort | uniq -c`",
            "Add the role to a third host (or remove it from a fourth) so the count is 3 or 5, \
             e.g. `db3<TAB>10.0.0.13<TAB>etcd,postgres,redis`",
            "Check the file again: `kbz-install validate --inventory servers.tsv`",
        ],
    ),
    e(
        Code::E008,
        "general",
        "Configuration file invalid",
        "kbz.toml could not be used: it is not valid TOML, it contains a key kbz does not know \
         (unknown keys are errors, so a typo never silently falls back to a default), or a value \
         has the wrong type or range, such as `forks = 0`, a subnet that is not in CIDR form or \
         a timeout written as a string. The message gives the line and the key.",
        &[
            "Validate the configuration together with the inventory: \
             `kbz-install validate --inventory servers.tsv --config kbz.toml`",
            "Compare your file with the documented example: `diff -u examples/kbz.toml kbz.toml`",
            "Check the TOML syntax on its own: \
             `python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], \"rb\"))' kbz.toml`",
            "Read the list of keys and their defaults: `less docs/inventory.md`",
        ],
    ),
    e(
        Code::E009,
        "general",
        "Address plan conflict",
        "A virtual IP from [vips] or an address of the MetalLB range in kbz.toml conflicts with \
         the address plan: it equals a node IP from servers.tsv, overlaps another VIP or the \
         MetalLB range, or lies outside [cluster] subnet. A VIP that is also a node's address \
         breaks both that node and the failover, and an address outside the subnet cannot be \
         announced by VRRP or ARP on the nodes' network.",
        &[
            "List the node addresses already in use: `grep -v '^#' servers.tsv | cut -f2 | sort -V`",
            "Make sure a candidate address is free on the network (no reply expected): \
             `ping -c 2 -W 1 10.0.0.100`",
            "Choose VIPs and the MetalLB range from unused addresses inside [cluster] subnet, \
             then check again: `kbz-install validate --inventory servers.tsv --config kbz.toml`",
        ],
    ),
    e(
        Code::E010,
        "general",
        "Invalid request",
        "The command line asked for something kbz cannot do: `explain` with a code outside \
         E001-E068, E071-E072 and E076-E081, `--only` with a name that is not a component, `--start-from-module` with a \
         number outside 1-10, or `rollback` when the state directory .kbz/ holds no failed run \
         to undo. Nothing was changed on any host.",
        &[
            "See the subcommands and options: `kbz-install --help`, and an explanation: \
             `kbz-install explain E002`",
            "Modules are 1 base, 2 keepalived, 3 haproxy, 4 etcd, 5 postgres, 6 redis, \
             7 rabbitmq, 8 mariadb, 9 minio, 10 kubernetes: `kbz-install --start-from-module 5` \
             or `kbz-install --only haproxy`",
            "Check whether a failed run's journal exists before rolling back: `ls -la .kbz/`",
        ],
    ),
    // Network: reaching hosts.
    e(
        Code::E011,
        "network",
        "Host unreachable",
        "kbz could not open a TCP connection to the host's SSH port within [timeouts] connect. \
         The host may be down, its IP in servers.tsv may be wrong, sshd may not listen on that \
         port (see the ssh_port column), or a firewall or security group may drop the traffic. \
         A dry-run plans an unreachable host as fresh; a real run does not touch it.",
        &[
            "Check that the host answers at all: `ping -c 3 10.0.0.11`",
            "Check the SSH port from the machine running kbz: `nc -vz -w 5 10.0.0.11 22`",
            "On the host's console, check sshd: `systemctl status ssh` and `ss -ltnp | grep sshd`",
            "For slow links raise `connect` under [timeouts] in kbz.toml, then resume: \
             `kbz-install --start-from-module N`",
        ],
    ),
    e(
        Code::E012,
        "network",
        "SSH handshake failed",
        "The TCP connection opened but the SSH handshake did not complete: the client and \
         server share no key-exchange, cipher or host-key algorithm, the server closed the \
         connection (MaxStartups, fail2ban, a TCP wrapper), or the port is not an SSH server \
         at all. kbz uses libssh2, which supports fewer algorithms than OpenSSH.",
        &[
            "Watch the negotiation with OpenSSH: `ssh -vvv -p 22 deploy@10.0.0.11 true`",
            "Confirm the port speaks SSH (expect `SSH-2.0-...`): `nc -w 3 10.0.0.11 22 < /dev/null`",
            "On the host, list what sshd offers and why it dropped you: \
             `sudo sshd -T | grep -E '^(kexalgorithms|ciphers|hostkeyalgorithms)'` and \
             `journalctl -u ssh -n 50`",
            "If fail2ban banned your address: `sudo fail2ban-client status sshd` and \
             `sudo fail2ban-client set sshd unbanip 203.0.113.5`",
        ],
    ),
    e(
        Code::E013,
        "network",
        "SSH authentication failed",
        "The server rejected every authentication method kbz tried: the key from [ssh] key in \
         kbz.toml, or the identities in ssh-agent when no key is set. The public key may be \
         missing from the user's ~/.ssh/authorized_keys, the ssh_user column may name the wrong \
         user, or sshd may refuse the key type or ignore authorized_keys because of its \
         permissions.",
        &[
            "Try the same key and user by hand: \
             `ssh -i ~/.ssh/id_ed25519 -o IdentitiesOnly=yes -p 22 deploy@10.0.0.11 true`",
            "Install the public key for that user: `ssh-copy-id -i ~/.ssh/id_ed25519.pub deploy@10.0.0.11`",
            "When relying on the agent, check it holds a key: `ssh-add -l`",
            "On the host, read sshd's reason and fix permissions: `journalctl -u ssh -n 50`, \
             `chmod 700 ~/.ssh && chmod 600 ~/.ssh/authorized_keys`",
        ],
    ),
    e(
        Code::E014,
        "network",
        "Host key mismatch",
        "The host presented an SSH host key different from the one recorded for it in \
         known_hosts. This happens legitimately when a server is reinstalled or its IP is reused \
         by another machine, but it is also exactly what a man-in-the-middle attack looks like, \
         so kbz refuses to connect. Replace the recorded key only after confirming the new one \
         out of band.",
        &[
            "On the host's console, print its key fingerprint: \
             `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`, and compare it with what the \
             network offers: `ssh-keyscan -t ed25519 10.0.0.11 | ssh-keygen -lf -`",
            "If they match, remove the old entries: `ssh-keygen -R db1` and `ssh-keygen -R 10.0.0.11`",
            "Record the new key: `ssh-keyscan -H 10.0.0.11 >> ~/.ssh/known_hosts`",
        ],
    ),
    e(
        Code::E015,
        "network",
        "Unknown host key",
        "The host is not in the known_hosts file kbz uses (~/.ssh/known_hosts, or [ssh] \
         known_hosts in kbz.toml), so its identity cannot be verified. kbz never trusts a new \
         key silently: you either record it first or accept new keys explicitly for this run.",
        &[
            "Compare the offered fingerprint with the one on the host's console: \
             `ssh-keyscan 10.0.0.11 | ssh-keygen -lf -`",
            "Record the key: `ssh-keyscan -H 10.0.0.11 >> ~/.ssh/known_hosts`",
            "On a freshly provisioned, trusted network, accept and record new keys for this run: \
             `kbz-install --accept-new-host-keys --inventory servers.tsv`",
            "Check which known_hosts file kbz reads: `grep -n known_hosts kbz.toml`",
        ],
    ),
    e(
        Code::E016,
        "network",
        "Command timed out",
        "A remote command ran longer than [timeouts] command in kbz.toml (900 s by default) and \
         was stopped. Common causes are apt waiting for a lock held by unattended-upgrades, a \
         slow mirror or apt proxy, a command waiting for input, or a host that is overloaded or \
         out of memory.",
        &[
            "Look for another apt holding the lock: `sudo fuser -v /var/lib/dpkg/lock-frontend` \
             and `systemctl status unattended-upgrades`",
            "Check load and memory on the host: `uptime`, `free -m`, `journalctl -k -n 50`",
            "Raise `command` under [timeouts] in kbz.toml if the work is legitimately slow, then \
             resume: `kbz-install --start-from-module N`",
        ],
    ),
    e(
        Code::E017,
        "network",
        "SSH session or transfer failed",
        "An established SSH session broke while kbz ran a command or transferred a file: the \
         connection dropped, the host answered nothing for three keepalive intervals (frozen, \
         powered off, its sshd stopped or its traffic dropped), sshd was restarted, the channel \
         was closed by the server, or the server sent data libssh2 could not parse. A transfer also fails here when the remote \
         filesystem fills up during the copy.",
        &[
            "Check that a fresh session works and stays up: \
             `ssh -o ServerAliveInterval=15 deploy@10.0.0.11 uptime`",
            "On the host, look for sshd restarts and a full disk: `journalctl -u ssh -n 100` and `df -h`",
            "Check session limits in sshd: `sudo sshd -T | grep -Ei 'maxsessions|clientalive'`",
            "Resume; the engine probes again and converges: `kbz-install --start-from-module N`",
        ],
    ),
    e(
        Code::E018,
        "network",
        "Jump host failed",
        "kbz could not reach a host through the bastion set in [ssh] jump_host: connecting or \
         authenticating to the bastion failed, or the bastion refused to forward a TCP \
         connection (direct-tcpip) to the target: a host's SSH port, or for kbz-failover's \
         tunnels a service port (PostgreSQL 5432, Redis 6379, Sentinel 26379 of a VIP or a \
         member). Forwarding is often disabled by `AllowTcpForwarding no` on hardened \
         bastions, and the value must be `user@host:port`.",
        &[
            "Try the same path with OpenSSH: `ssh -J ops@bastion.example.com:22 deploy@10.0.0.11 true`",
            "On the bastion, check forwarding is allowed: `sudo sshd -T | grep -i allowtcpforwarding`",
            "From the bastion, check the target's port: `nc -vz -w 5 10.0.0.11 22` (or the service port the message names, e.g. `nc -vz -w 5 10.0.0.100 5432`)",
            "Check the configured value: `grep -n jump_host kbz.toml`",
        ],
    ),
    e(
        Code::E019,
        "network",
        "Package download failed",
        "apt on a host could not download package indexes or packages: the mirror is \
         unreachable, DNS fails, the apt proxy from [cluster] apt_proxy is down, a third-party \
         repository (such as PostgreSQL's PGDG) is missing its signing key, or the release's \
         repository has moved to the archive. The failed step installed nothing, and apt retries \
         cleanly once the host reaches its sources again.",
        &[
            "On the host, see the first error apt reports: `sudo apt-get update`",
            "Check DNS and reachability of the mirror: `getent hosts deb.debian.org` and \
             `curl -sSI http://deb.debian.org/debian/`",
            "If a proxy is configured, check it answers: `cat /etc/apt/apt.conf.d/01kbz-proxy` \
             and `curl -sSI http://10.0.0.5:3142/`",
            "Once apt works, resume: `kbz-install --start-from-module N`",
        ],
    ),
    e(
        Code::E020,
        "network",
        "HTTP endpoint failed",
        "An HTTP request kbz made failed or got an error status: a notification webhook (Slack, \
         Discord, Telegram, a generic JSON webhook), a release download, or a service's REST \
         endpoint. Common causes are a wrong or revoked webhook URL or token, no outbound \
         internet access from where kbz runs, a proxy that must be configured, rate limiting \
         (HTTP 429), or a download URL that moved. A failed notification never fails an install.",
        &[
            "Check the endpoint by hand: `curl -sS -o /dev/null -w '%{http_code}\\n' https://example.com/path`",
            "Send a test message to every configured target: `kbz-install notify test`",
            "Check whether a proxy is needed or set: `env | grep -i _proxy`",
            "For a failed download, resume once the URL answers: `kbz-install --start-from-module N`",
        ],
    ),
    // Resources: changing hosts.
    e(
        Code::E021,
        "resources",
        "Remote command failed",
        "A command kbz ran on a host exited with a non-zero status. The message shows the \
         command (with secrets masked), its exit code and the end of its standard error, which \
         usually names the cause; the step's earlier changes were rolled back.",
        &[
            "Resume with verbose output to see the full command and output: \
             `kbz-install -v --start-from-module N`",
            "Run the command shown in the message by hand on the host: \
             `ssh deploy@10.0.0.11 'sudo sh -c \"COMMAND\"'`",
            "Read the host's recent log: `journalctl -n 100 --no-pager`",
            "If the hosts were left part-way, undo the failed run: `kbz-install rollback`",
        ],
    ),
    e(
        Code::E022,
        "resources",
        "File write failed",
        "kbz could not write a file on a host (it writes a temporary file, sets mode and owner, \
         then renames it into place): the directory is missing, the filesystem is full or \
         mounted read-only, the owning user or group does not exist yet, or the file has the \
         immutable attribute. The previous file is untouched, because the new one only \
         replaces it once complete.",
        &[
            "Check free space and inodes: `df -h /etc` and `df -i /etc`",
            "Check the mount is writable: `findmnt -no OPTIONS -T /etc/haproxy`",
            "Check for the immutable flag and clear it if you set it: \
             `lsattr /etc/haproxy/haproxy.cfg` and `sudo chattr -i /etc/haproxy/haproxy.cfg`",
            "Check the owner exists: `getent passwd haproxy`",
        ],
    ),
    e(
        Code::E023,
        "resources",
        "Package installation failed",
        "apt-get install failed on a host: a package or a version pinned under [versions] in \
         kbz.toml does not exist for this release, an earlier dpkg run was interrupted and \
         needs finishing, another apt process holds the lock, or dependencies conflict with \
         held packages. The end of dpkg's output, shown in the message, usually names the \
         package at fault.",
        &[
            "Finish interrupted installs and fix dependencies: \
             `sudo dpkg --configure -a && sudo apt-get -f install`",
            "See which versions the host can install: `apt-cache policy postgresql-15`",
            "Look for a lock holder and held packages: \
             `sudo fuser -v /var/lib/dpkg/lock-frontend` and `apt-mark showhold`",
            "Resume once apt is healthy: `kbz-install --start-from-module N`",
        ],
    ),
    e(
        Code::E024,
        "resources",
        "Service failed to start",
        "A systemd unit did not become active after kbz started or restarted it. The daemon may \
         reject its configuration, its port may already be in use, its data directory may have \
         the wrong owner, or a dependency may not be ready (Patroni needs etcd, HAProxy needs \
         its VIP or `ip_nonlocal_bind`).",
        &[
            "See the unit's state and last lines: `systemctl status haproxy --no-pager`",
            "Read its log: `journalctl -u patroni -n 100 --no-pager` (use the unit named in the message)",
            "Find who holds the port: `sudo ss -ltnp | grep ':5432'`",
            "After fixing the cause, resume with `kbz-install --start-from-module N`, or undo \
             the run with `kbz-install rollback`",
        ],
    ),
    e(
        Code::E025,
        "resources",
        "Kernel setting failed",
        "Setting a sysctl or loading a kernel module (overlay, br_netfilter) failed. Containers \
         (LXC, some VPS types) usually forbid both, the module may be missing for the running \
         kernel after an upgrade without a reboot, or the sysctl key may not exist on this \
         kernel.",
        &[
            "Try loading the module by hand: `sudo modprobe br_netfilter && lsmod | grep br_netfilter`",
            "See which sysctl file and key fail: `sudo sysctl --system`",
            "Check whether the host is a container: `systemd-detect-virt`",
            "Check modules exist for the running kernel, and reboot into the installed one if \
             not: `ls /lib/modules/$(uname -r)/`",
        ],
    ),
    e(
        Code::E026,
        "resources",
        "Not enough disk space",
        "A host has less free space than the step needs on the root filesystem, /var (packages, \
         logs, database data) or a service's data directory. kbz checks before installing and \
         before writing data, because a database that runs out of disk stops or corrupts.",
        &[
            "See free space and inodes: `df -h` and `df -i`",
            "Find what uses the space: `sudo du -xh /var --max-depth=2 | sort -h | tail -20`",
            "Free package caches and old logs: `sudo apt-get clean` and \
             `sudo journalctl --vacuum-size=200M`",
            "Grow the volume if needed, then resume: `kbz-install --start-from-module N`",
        ],
    ),
    e(
        Code::E027,
        "resources",
        "Privilege escalation failed",
        "The SSH user is not root and `sudo` did not work without a prompt: the user is not in \
         sudoers, sudo asks for a password (kbz never types one), sudo is not installed, or the \
         sudoers rules only allow some commands. kbz needs root on every host to install \
         packages, write under /etc and manage services.",
        &[
            "Test non-interactive sudo: `ssh deploy@10.0.0.11 sudo -n true`",
            "As root on the host, allow the deploy user: \
             `echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/kbz && chmod 440 /etc/sudoers.d/kbz && visudo -c`",
            "Install sudo if it is missing (as root): `apt-get install -y sudo`",
        ],
    ),
    e(
        Code::E028,
        "resources",
        "State directory or journal problem",
        "kbz could not use its local state directory .kbz/ (run journal, logs, download cache, \
         secrets): it is not writable, the disk where kbz runs is full, or a journal file is \
         truncated or corrupt, for example after a crash. Without a journal a run cannot be \
         rolled back, so kbz stops instead of changing hosts blind.",
        &[
            "Check the directory and the disk: `ls -la .kbz/` and `df -h .`",
            "Give the directory back to your user: `sudo chown -R \"$USER\" .kbz && chmod 700 .kbz`",
            "Move a corrupt journal file named in the message aside: \
             `mv .kbz/FILE .kbz/FILE.broken`, then see the hosts' real state with \
             `kbz-install --dry-run --inventory servers.tsv`",
        ],
    ),
    e(
        Code::E029,
        "resources",
        "Rollback incomplete",
        "A rollback, automatic after a failure or from `kbz-install rollback`, could not undo \
         every recorded change: a host was unreachable, a previous file could not be restored, \
         or a service did not return to its prior state. The steps not undone stay in the \
         journal so the rollback can be retried; until then the hosts named in the message are \
         in a mixed state.",
        &[
            "Fix what the message names (often reachability: `nc -vz -w 5 10.0.0.11 22`), then \
             retry: `kbz-install rollback`",
            "Check a named service on its host: `systemctl status patroni --no-pager`",
            "See how far the hosts are from the desired state: \
             `kbz-install --dry-run --inventory servers.tsv`",
            "Or go forward instead of back: `kbz-install --start-from-module N`",
        ],
    ),
    e(
        Code::E030,
        "resources",
        "Download checksum mismatch",
        "A downloaded artifact (a release archive or binary such as K3s, MinIO or etcd) did not \
         match the SHA-256 kbz has pinned for it. The download may be truncated, a proxy may \
         have returned an error page, the version pin may not match its checksum, or the file \
         was tampered with. kbz discards the file and never installs it.",
        &[
            "Compute the checksum of what the URL serves: `curl -fsSL URL | sha256sum`",
            "Check whether a proxy rewrites downloads: `env | grep -i _proxy`",
            "Check the pinned version in kbz.toml: `grep -n -A 12 '^\\[versions\\]' kbz.toml`",
            "Remove the cached copy under .kbz/ named in the message and retry: \
             `kbz-install --start-from-module N`",
        ],
    ),
    // Components: services and clusters.
    e(
        Code::E031,
        "components",
        "Readiness wait timed out",
        "After starting a service kbz waits for real readiness (a port answering, a member \
         joined, Patroni reporting running, a Sentinel seeing its master), and this wait took \
         longer than [timeouts] readiness. The service may be crash-looping, waiting for peers \
         a firewall blocks, or just slow on small hosts.",
        &[
            "Check the service on the host named in the message: `systemctl status etcd` and \
             `journalctl -u etcd -n 100`",
            "Check peers reach each other: `nc -vz -w 3 10.0.0.12 2380` (etcd 2379-2380, \
             Patroni 8008, PostgreSQL 5432, Redis 6379, Sentinel 26379, RabbitMQ 5672/25672, \
             Galera 3306/4567)",
            "Raise `readiness` under [timeouts] in kbz.toml if the hosts are slow, then resume: \
             `kbz-install --start-from-module N`",
        ],
    ),
    e(
        Code::E032,
        "components",
        "Unsupported operating system",
        "kbz supports Debian and Ubuntu releases with systemd and apt; the host reported another \
         distribution, release or architecture in /etc/os-release. Package names, repository \
         URLs and service names differ between releases, so kbz refuses rather than guess.",
        &[
            "See what the host runs: `cat /etc/os-release` and `dpkg --print-architecture`",
            "Check that systemd is PID 1: `ps -p 1 -o comm=`",
            "Reinstall the host with a supported Debian or Ubuntu release; its host key changes, \
             so then run `ssh-keygen -R 10.0.0.11 && ssh-keyscan -H 10.0.0.11 >> ~/.ssh/known_hosts`",
        ],
    ),
    e(
        Code::E033,
        "components",
        "Rendered configuration rejected by validator",
        "A configuration file kbz rendered was rejected by the daemon's own checker (`haproxy \
         -c`, `keepalived -t`, `patroni --validate-config`, `sshd -t`, `promtool check config`) \
         before it replaced the live one, so the running service is untouched. Usually a value \
         from kbz.toml or servers.tsv produced something this daemon version does not accept.",
        &[
            "Render every config locally and check the one named: \
             `cargo xtask render-configs --out /tmp/kbz-rendered` then \
             `haproxy -c -f /tmp/kbz-rendered/lb1/haproxy.cfg` (adjust host and file)",
            "Check the daemon version on the host: `haproxy -v`, `keepalived --version`, `patroni --version`",
            "See the planned file diff: `kbz-install --dry-run --only haproxy`",
        ],
    ),
    e(
        Code::E034,
        "components",
        "Template rendering failed",
        "A component's template could not be rendered: it needs a value that is missing (a VIP \
         for a front under [vips], a pinned version, a host for a role) or a value has the \
         wrong shape. This is found on the machine running kbz before any host is changed.",
        &[
            "Validate inputs: `kbz-install validate --inventory servers.tsv --config kbz.toml`",
            "Check each front has a VIP: `grep -n -A 8 '^\\[vips\\]' kbz.toml`",
            "Reproduce the plan for that component with detail: `kbz-install --dry-run -v --only postgres`",
            "If the inputs are valid this is a kbz bug: reproduce it with \
             `cargo xtask render-configs` and report it with the message",
        ],
    ),
    e(
        Code::E035,
        "components",
        "Cluster bootstrap failed",
        "A cluster could not be formed for the first time: etcd members disagreed on the \
         initial cluster, Patroni could not initialise a leader, RabbitMQ nodes could not join \
         (differing Erlang cookies), Galera had no node safe to bootstrap, or K3s servers could \
         not join the first. Data left from an earlier failed attempt is a frequent cause.",
        &[
            "See the members: `etcdctl member list -w table`, \
             `patronictl -c /etc/patroni/config.yml list`, `sudo rabbitmqctl cluster_status`, \
             `sudo k3s kubectl get nodes`",
            "Read the log of the failing service: `journalctl -u etcd -n 100` (or patroni, \
             rabbitmq-server, mariadb, k3s)",
            "For Galera, find the node that may bootstrap: `sudo grep safe_to_bootstrap /var/lib/mysql/grastate.dat`",
            "For a first install with no data worth keeping, undo and retry: \
             `kbz-install rollback` then `kbz-install --start-from-module N`",
        ],
    ),
    e(
        Code::E036,
        "components",
        "Quorum lost",
        "A quorum cluster (etcd, Redis Sentinel, RabbitMQ, Galera or K3s's embedded etcd) has \
         fewer than a majority of its members healthy, so it stops taking writes or failovers \
         to protect data. Typical causes are two of three members down at once, a network \
         partition, or a change that took more than one member down at a time.",
        &[
            "etcd: `etcdctl endpoint health --cluster` and `etcdctl endpoint status --cluster -w table`",
            "Galera: `sudo mysql -e \"SHOW STATUS LIKE 'wsrep_cluster_status'\"` (expect Primary); \
             RabbitMQ: `sudo rabbitmqctl cluster_status`",
            "Bring the stopped members back, one at a time: `sudo systemctl start etcd`, then \
             check the links between members: `nc -vz -w 3 10.0.0.12 2380`",
            "Do not bootstrap a new cluster from a stale member; check overall health first: \
             `kbz-health --inventory servers.tsv` (every member, quorum and leader, with fixes)",
            "Galera with every node down (a power cut): re-run `kbz-install`, which recovers the \
             cluster from the node with the highest seqno; with some nodes still running \
             outside a Primary component kbz refuses: stop them first (`sudo systemctl stop mariadb`)",
        ],
    ),
    e(
        Code::E037,
        "components",
        "Virtual IP not held",
        "No load-balancer host holds a VIP from [vips], or more than one does (split brain). \
         keepalived may be stopped, its track script may fail because HAProxy is down, VRRP \
         packets (IP protocol 112) may be blocked between the lb hosts, or another keepalived on \
         the same network may use the same virtual_router_id.",
        &[
            "See who holds each VIP and whether keepalived runs on every lb host: \
             `kbz-health --inventory servers.tsv --component keepalived`",
            "On each lb host, see who holds the address: `ip -brief address | grep 10.0.0.100`",
            "Check keepalived and its log: `systemctl status keepalived` and `journalctl -u keepalived -n 100`",
            "Check the tracked service: `systemctl status haproxy`",
            "Watch VRRP adverts from both peers: `sudo tcpdump -ni any vrrp`",
        ],
    ),
    e(
        Code::E038,
        "components",
        "Replication broken",
        "A replica is not replicating from its primary: a PostgreSQL standby is not streaming or \
         lags too far, a Redis replica is disconnected from its master, or a Galera node is not \
         synced. Causes include a wrong replication password, a WAL segment the primary has \
         already recycled, network problems, or a replica whose history diverged after a \
         failover.",
        &[
            "See every replica's state, lag and timeline at once: \
             `kbz-health --inventory servers.tsv --component postgres` (or `--component redis`)",
            "PostgreSQL: `patronictl -c /etc/patroni/config.yml list` (expect streaming and small lag)",
            "On the primary: `sudo -u postgres psql -c 'SELECT client_addr, state, replay_lag FROM pg_stat_replication'`",
            "Redis, with the password from .kbz/secrets.toml typed at the prompt: \
             `read -rs REDISCLI_AUTH && export REDISCLI_AUTH && redis-cli INFO replication`",
            "Rebuild a broken Patroni replica: `patronictl -c /etc/patroni/config.yml reinit CLUSTER MEMBER`",
            "Galera: `sudo mariadb -e \"SHOW STATUS LIKE 'wsrep_local_state_comment'\"` (expect \
             Synced); a joining node needs ports 4567, 4568 and 4444 open to a donor and \
             `journalctl -u mariadb` shows its state transfer",
        ],
    ),
    e(
        Code::E039,
        "components",
        "Sentinel cannot promote",
        "Redis Sentinel cannot fail the master over: fewer Sentinels than the quorum agree, \
         Sentinels share one myid (a copied sentinel.conf), they cannot reach each other \
         (protected-mode, bind, a missing announce-ip), auth-pass is wrong, or every replica \
         has replica-priority 0. kbz configures against all of these, so this usually means a \
         hand edit or a Sentinel that is down.",
        &[
            "See every Sentinel's master and CKQUORUM at once: \
             `kbz-health --inventory servers.tsv --component redis`",
            "Ask each Sentinel, with the password typed at the prompt: \
             `read -rs REDISCLI_AUTH && export REDISCLI_AUTH && redis-cli -p 26379 SENTINEL CKQUORUM kbz`",
            "Check the Sentinels see each other and have distinct ids: \
             `redis-cli -p 26379 SENTINEL sentinels kbz` and `sudo grep myid /etc/redis/sentinel.conf`",
            "Check the service: `systemctl status redis-sentinel` and `journalctl -u redis-sentinel -n 100`",
            "Put kbz's configuration back: `kbz-install --only redis`",
        ],
    ),
    e(
        Code::E040,
        "components",
        "Health check failed",
        "A health probe failed: the service answered wrongly, too slowly or not at all. The \
         message names the host, the service and the probe, for example Patroni's REST \
         /health, an HAProxy backend's state, etcd endpoint health or a Redis PING through the \
         VIP.",
        &[
            "See every check at once, each failing one with its code and fix: \
             `kbz-health --inventory servers.tsv` (`--component NAME` for one service, `--json` for tools)",
            "Check the service named: `systemctl status patroni` and `journalctl -u patroni -n 100`",
            "Ask Patroni directly: `curl -s http://10.0.0.11:8008/health`",
            "See HAProxy's view of its backends: \
             `echo 'show stat' | sudo socat stdio /run/haproxy/admin.sock | cut -d, -f1,2,18`",
        ],
    ),
    // Backup and restore.
    e(
        Code::E041,
        "backup",
        "Backup target unreachable",
        "The backup repository could not be used: the inventory has no host with the `backup` \
         role, the backup host does not answer over SSH, or the repository directory \
         (`[backup] dir`, /var/backups/kbz by default) cannot be created or written there. \
         Nothing was backed up or restored.",
        &[
            "Give one host the `backup` role in servers.tsv (it may share a host with other \
             roles), then `kbz-backup run`",
            "Check the backup host answers: `ssh root@BACKUP_HOST true` and `kbz-health`",
            "Check the directory on the backup host: `ls -ld /var/backups/kbz` and `df -h /var/backups`",
        ],
    ),
    e(
        Code::E042,
        "backup",
        "Backup failed",
        "A backup did not complete: the snapshot or dump command failed on the source host \
         (`etcdctl snapshot save`, Redis BGSAVE, pgBackRest), no healthy member was found to \
         take it from, or storing it in the repository was interrupted. A partial backup is \
         never recorded: its manifest is written last.",
        &[
            "Check the service is healthy first: `kbz-health --component etcd` (or redis, postgres)",
            "Check free space on the source host, where the snapshot is staged: `df -h /var/tmp`",
            "Read the tool's error in the message; for Redis: `redis-cli INFO persistence`",
            "Run the backup again once fixed: `kbz-backup run --component NAME`",
        ],
    ),
    e(
        Code::E043,
        "backup",
        "Restore failed",
        "Restoring a backup did not complete, or was refused: a running, healthy cluster is \
         only overwritten with `--force` (the message lists what would be stopped); the \
         service could not be stopped, its data directory replaced, or it did not come back \
         healthy. A restore that failed part-way may leave the service stopped until it is \
         retried.",
        &[
            "See every step a restore takes without changing anything: \
             `kbz-backup restore COMPONENT --dry-run`",
            "Restore onto the running cluster on purpose: `kbz-backup restore COMPONENT --force`",
            "Read the service's log on the host named: `journalctl -u etcd -n 100` (or \
             redis-server, patroni)",
            "Check space for the restored data: `df -h /var/lib`",
        ],
    ),
    e(
        Code::E044,
        "backup",
        "Backup verification failed",
        "A stored backup does not match its manifest: the artifact's sha256 or size differs \
         from the one recorded when it was stored, the file is missing, or it does not \
         decrypt with the secrets file's `backup_encryption` key. Such a backup cannot be \
         trusted for a restore.",
        &[
            "See which backups fail and why: `kbz-backup verify`",
            "Recompute the checksum on the backup host: \
             `sha256sum /var/backups/kbz/COMPONENT/ID/*` and compare with manifest.json there",
            "Check the backup host's disk: `dmesg | grep -i error` and `smartctl -a /dev/sda`",
            "Take a fresh backup: `kbz-backup run --component COMPONENT`",
        ],
    ),
    e(
        Code::E045,
        "backup",
        "No backup found",
        "A restore or drill asked for a backup and none matched: none has been taken yet, the \
         requested id does not exist, the requested time (`--at`) is before the first \
         backup, or retention has already pruned it. Nothing was stopped.",
        &[
            "List what is stored: `kbz-backup list`",
            "Take the first backup: `kbz-backup run`",
            "Ask for a time after the first backup, in UTC: `--at 2026-12-02T10:00:00Z`",
        ],
    ),
    e(
        Code::E046,
        "backup",
        "Retention pruning failed",
        "Deleting backups older than the retention policy (`[backup] keep_full`, \
         `keep_days`) failed: the backup host became unreachable part-way, the files cannot \
         be removed, or the tool's own expiry (pgBackRest) failed. The old backups still \
         exist and use space; newer backups were not touched.",
        &[
            "See what is kept and what would go: `kbz-backup list`",
            "Check the repository's owner and mode on the backup host: `ls -la /var/backups/kbz`",
            "Prune again once fixed: `kbz-backup prune`",
        ],
    ),
    e(
        Code::E047,
        "backup",
        "Restore drill mismatch",
        "A restore drill restored a backup into a scratch instance and the result did not match \
         its manifest (key counts, a canary key, row counts), or the scratch instance could \
         not be started at all. The backup may be incomplete or damaged, or taken from a \
         member that was behind.",
        &[
            "Run the drill again and read what differs: `kbz-backup drill --component NAME`",
            "Verify the stored artifacts: `kbz-backup verify`",
            "Check the member the backup was taken from (the manifest's source host) was healthy: \
             `kbz-health`",
            "Take a fresh backup and repeat the drill: `kbz-backup run` then `kbz-backup drill`",
        ],
    ),
    e(
        Code::E048,
        "backup",
        "Backup storage full",
        "There is no room for the backup: the repository's disk on the backup host has less \
         free space than the backup needs plus a margin, or a write ran out of space. \
         Backups stop until space is freed or added.",
        &[
            "See the space on the backup host: `df -h /var/backups/kbz`",
            "Remove backups past retention: `kbz-backup prune`",
            "Keep fewer backups: lower `[backup] keep_full` or `keep_days` in kbz.toml, then prune",
        ],
    ),
    e(
        Code::E049,
        "backup",
        "Another backup is running",
        "A backup, restore, drill or prune is already running on this controller and holds \
         the backup lock (`STATE_DIR/backup.lock`), so a second one was refused: two at once \
         double the load and can upset retention. A lock can also be left behind by a job \
         killed by a reboot or the OOM killer; the message then calls it stale.",
        &[
            "Look for a running job: `pgrep -a kbz-backup`",
            "Check the schedules do not overlap: `kbz-backup schedule show`",
            "If no job runs, remove the stale lock named in the message: `rm LOCKFILE`",
        ],
    ),
    e(
        Code::E050,
        "backup",
        "WAL archiving broken",
        "PostgreSQL's archive_command is failing, so WAL segments are not reaching the backup \
         store. Point-in-time recovery is impossible past the last archived segment, and \
         pg_wal grows on the primary until its disk fills.",
        &[
            "See the archiver's state: `sudo -u postgres psql -c 'SELECT archived_count, \
             last_archived_wal, failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver'`",
            "Read the error: `journalctl -u patroni -n 200 | grep -i archive`",
            "Watch pg_wal's size: \
             `sudo du -sh \"$(sudo -u postgres psql -Atc 'SHOW data_directory')/pg_wal\"`",
            "Check the archive target answers: `mc ls kbz/`",
        ],
    ),
    // Security.
    e(
        Code::E051,
        "security",
        "Secrets file permissions too open",
        "The secrets file .kbz/secrets.toml is readable or writable by group or others. It \
         holds every generated service password, so kbz refuses to use it until it is mode \
         0600 (owner only). This usually follows a copy with cp or an archive tool under a \
         loose umask; if other users could read it, treat the passwords as exposed.",
        &[
            "Restrict the file: `chmod 600 .kbz/secrets.toml`",
            "Restrict the directory too: `chmod 700 .kbz`",
            "Check (expect `-rw-------`): `ls -l .kbz/secrets.toml`",
            "Make sure it is never committed: `git check-ignore -v .kbz/secrets.toml`",
        ],
    ),
    e(
        Code::E052,
        "security",
        "Secrets file unreadable or corrupt",
        "kbz could not read .kbz/secrets.toml, it is not valid TOML `name = \"value\"` lines, a \
         value is not a string, or a secret a component needs is missing. Do not delete the \
         file casually: services already installed keep their old passwords, and newly \
         generated ones would no longer match them.",
        &[
            "Check owner and mode: `ls -l .kbz/secrets.toml`",
            "Check the syntax without printing values: \
             `python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], \"rb\"))' .kbz/secrets.toml`",
            "List the names it holds, without values: `cut -d= -f1 .kbz/secrets.toml`",
            "Restore it from your safe copy: \
             `install -m 600 /path/to/backup/secrets.toml .kbz/secrets.toml`",
        ],
    ),
    e(
        Code::E053,
        "security",
        "SSH private key unusable",
        "The private key from [ssh] key in kbz.toml could not be loaded: the file is missing or \
         unreadable, it is protected by a passphrase, or libssh2 cannot read its format. Keys \
         with a passphrase belong in ssh-agent.",
        &[
            "Check the file and its mode: `ls -l ~/.ssh/id_ed25519` and `chmod 600 ~/.ssh/id_ed25519`",
            "Check the key loads (asks for a passphrase if it has one): `ssh-keygen -y -f ~/.ssh/id_ed25519`",
            "Use the agent for a key with a passphrase: `eval \"$(ssh-agent -s)\" && ssh-add ~/.ssh/id_ed25519`, \
             and remove `key` from [ssh]",
            "Convert an RSA key to PEM if libssh2 cannot parse it: `ssh-keygen -p -m PEM -f ~/.ssh/id_rsa`",
        ],
    ),
    e(
        Code::E054,
        "security",
        "SSH agent unavailable",
        "No key is set in [ssh] key, so kbz asked ssh-agent, but SSH_AUTH_SOCK is unset, the \
         socket is gone, or the agent holds no keys. This is common under sudo, cron, or a \
         terminal multiplexer that lost the agent's environment.",
        &[
            "Check the agent: `echo \"$SSH_AUTH_SOCK\"` and `ssh-add -l`",
            "Start one and load your key: `eval \"$(ssh-agent -s)\" && ssh-add ~/.ssh/id_ed25519`",
            "Or name the key in kbz.toml: `[ssh]` then `key = \"/home/you/.ssh/id_ed25519\"`",
            "Under sudo, keep the socket: `sudo --preserve-env=SSH_AUTH_SOCK kbz-install --inventory servers.tsv`",
        ],
    ),
    e(
        Code::E055,
        "security",
        "TLS certificate verification failed",
        "A TLS connection was refused because the peer's certificate could not be verified: it \
         is self-signed or from a private CA that is not installed, the name or IP is not in \
         its subject alternative names, or a clock is far off. This applies to notification \
         endpoints, downloads, SMTP with TLS and TLS-enabled services.",
        &[
            "See the certificate's subject, issuer and names: \
             `openssl s_client -connect HOST:443 -servername HOST < /dev/null | openssl x509 -noout -subject -issuer -ext subjectAltName`",
            "Trust your private CA: `sudo cp ca.crt /usr/local/share/ca-certificates/kbz-ca.crt && sudo update-ca-certificates`",
            "Check the clock is synchronised: `timedatectl status`",
        ],
    ),
    e(
        Code::E056,
        "security",
        "Service rejected credentials",
        "A service refused the password kbz used (PostgreSQL, Patroni REST, Redis, Sentinel, \
         RabbitMQ, MariaDB or MinIO). The secrets file and the service disagree, usually \
         because .kbz/secrets.toml was replaced or regenerated, the password was changed by \
         hand on the service, or a service was not reloaded after a change.",
        &[
            "Test with the value from .kbz/secrets.toml typed at the prompt, e.g. Redis: \
             `read -rs REDISCLI_AUTH && export REDISCLI_AUTH && redis-cli PING`",
            "Read the service's reason: `journalctl -u patroni -n 100 | grep -i 'authentication failed'`",
            "List the users the service knows: `sudo -u postgres psql -c '\\du'` or `sudo rabbitmqctl list_users`",
            "Re-apply the component so its configuration carries the secrets file's values: \
             `kbz-install --only redis`",
        ],
    ),
    e(
        Code::E057,
        "security",
        "Port blocked by firewall",
        "A TCP port between hosts, or from the machine running kbz, is closed or filtered, so a \
         service cannot reach its peers although it runs. A host firewall (nftables, ufw) or a \
         cloud security group may block the cluster ports: 22 SSH, 2379-2380 etcd, 5432 and \
         8008 PostgreSQL and Patroni, 6379 and 26379 Redis and Sentinel, 4369, 5672 and 25672 \
         RabbitMQ, 3306, 4444, 4567 and 4568 Galera, 9000 MinIO, 6443 K3s, and VRRP (IP \
         protocol 112).",
        &[
            "Test the port from the peer: `nc -vz -w 3 10.0.0.12 2379`",
            "Check the service listens on the private address: `sudo ss -ltnp | grep 2379`",
            "Inspect the firewall: `sudo nft list ruleset` or `sudo ufw status verbose`",
            "Open the port to the cluster subnet: `sudo ufw allow from 10.0.0.0/24 to any port 2379:2380 proto tcp`",
        ],
    ),
    e(
        Code::E058,
        "security",
        "Certificate expired or expiring",
        "A TLS certificate used by the cluster (etcd peers and clients, K3s, MinIO, the \
         ingress) or by an endpoint kbz talks to has expired or expires soon. An expired \
         certificate breaks cluster traffic abruptly, so kbz warns ahead of time.",
        &[
            "See a file's expiry (K3s example): \
             `sudo openssl x509 -enddate -noout -in /var/lib/rancher/k3s/server/tls/serving-kube-apiserver.crt`",
            "See a live endpoint's expiry: \
             `openssl s_client -connect 10.0.0.21:6443 < /dev/null 2>/dev/null | openssl x509 -noout -enddate`",
            "Rotate K3s certificates on each server in turn: \
             `sudo systemctl stop k3s && sudo k3s certificate rotate && sudo systemctl start k3s`",
            "Check the host clock is right: `timedatectl status`",
        ],
    ),
    e(
        Code::E059,
        "security",
        "Insecure configuration refused",
        "kbz refused a setting that would weaken its security defaults, or found one in place: a \
         service bound to a public address or 0.0.0.0 (`kbz-health ports` and the port map after \
         an install list every listener of kbz's services on an address or port kbz does not \
         open for it), authentication turned off (Redis without requirepass, the RabbitMQ guest \
         user, Patroni REST without auth), a secret on a command line, or host key checking \
         disabled. The message names the setting or the listener.",
        &[
            "Find the setting named in the message: `grep -n KEY kbz.toml`",
            "For a listener, see which process opened it and with which options: `ss -ltnp` on \
             the host, then `kbz-health ports --inventory servers.tsv` again once it is bound to \
             the member address only",
            "Keep services on private addresses by setting [cluster] subnet to the nodes' network, \
             then check: `kbz-install validate --inventory servers.tsv --config kbz.toml`",
            "For unknown host keys record them instead of disabling checks: \
             `ssh-keyscan -H 10.0.0.11 >> ~/.ssh/known_hosts`",
        ],
    ),
    e(
        Code::E060,
        "security",
        "Permission denied on host",
        "An operation on a host failed with permission denied even with sudo: sudo only allows \
         some commands for this user, AppArmor denied the access, the path is immutable or on \
         a read-only mount, or a directory on the path is not traversable. The message names the path or command \
         that was refused.",
        &[
            "See what sudo allows: `sudo -l`",
            "Check every directory on the path: `namei -l /var/lib/postgresql/15/main`",
            "Check attributes and the mount: `lsattr -d /etc/patroni` and `findmnt -T /etc/patroni`",
            "Look for AppArmor denials: `sudo journalctl -k | grep -i apparmor | tail` and `sudo aa-status`",
        ],
    ),
    // Kubernetes (module 10): the cluster and its add-ons.
    e(
        Code::E061,
        "kubernetes",
        "Kubernetes API not ready",
        "The Kubernetes API server of the cluster did not answer /readyz with ok in time, or a \
         kubectl call to it failed: the control plane is still starting, K3s or the kubelet \
         crashed, the embedded etcd has no quorum, or the node cannot reach the first server \
         or the API VIP on port 6443.",
        &[
            "Look at the control plane: `journalctl -u k3s -n 100 --no-pager` (K3s) or `crictl ps -a` and `journalctl -u kubelet -n 100` (kubeadm)",
            "Ask the API directly on a master: `k3s kubectl get --raw=/readyz` or `kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw=/readyz`",
            "Check the VIP front: `nc -vz 192.0.2.104 6443`",
            "Resume once it answers: `kbz-install --start-from-module 10`",
        ],
    ),
    e(
        Code::E062,
        "kubernetes",
        "Kubernetes node not Ready",
        "A node of the inventory did not register with the cluster or did not become Ready in \
         time. A node stays NotReady until the pod network (Calico) runs on it; an agent that \
         cannot reach the API VIP, a wrong join token, a clock far off, or swap left on also \
         keep it out.",
        &[
            "See the node's conditions: `kubectl describe node NAME`",
            "Read the node's log: `journalctl -u k3s-agent -n 100` (K3s) or `journalctl -u kubelet -n 100` (kubeadm)",
            "Check the pod network: `kubectl -n calico-system get pods -o wide`",
        ],
    ),
    e(
        Code::E063,
        "kubernetes",
        "Admission webhook did not answer",
        "Applying a resource failed because an admission webhook the API server must call \
         (MetalLB's, cert-manager's, ingress-nginx's) did not answer: its pods are not Ready \
         yet, its service has no endpoints, or the API server cannot reach the pod network. kbz \
         retries until the readiness timeout before it reports this.",
        &[
            "Check the webhook's pods and endpoints: `kubectl -n metallb-system get pods,endpoints`",
            "Check that the pod network runs (the API server reaches webhooks through it): `kubectl get nodes` and `kubectl -n calico-system get pods`",
            "Give slow clusters more time: `[timeouts] readiness = 600` in kbz.toml, then `kbz-install --start-from-module 10`",
        ],
    ),
    e(
        Code::E064,
        "kubernetes",
        "Kubernetes add-on did not roll out",
        "An add-on (Calico, MetalLB, ingress-nginx, the monitoring stack, cert-manager, Rancher) \
         was applied but its deployment did not become available in time, or its manifest was \
         refused. Usual causes are images that cannot be pulled (no registry access: set \
         [kubernetes] registry_mirror), too little memory on the nodes, or a pinned manifest \
         that does not match the cluster's version.",
        &[
            "See what the pods wait for: `kubectl -n NAMESPACE get pods` and `kubectl -n NAMESPACE describe pod NAME`",
            "Check image pulls: `kubectl get events -A --field-selector reason=Failed`",
            "Check the pinned versions: `grep -n -A 3 '^\\[artifacts' kbz.toml`",
        ],
    ),
    e(
        Code::E065,
        "kubernetes",
        "kubeadm init, join or etcd member change failed",
        "`kubeadm init` on the first master or `kubeadm join` on another node exited with an \
         error: preflight checks failed (swap on, ports in use, a previous half-done install), \
         the node cannot reach the API VIP, the bootstrap token or uploaded certificates \
         expired, or the kubelet did not start under containerd. Or the stacked etcd member of \
         a master the inventory no longer lists could not be listed or removed (`etcdctl` in \
         the first master's etcd pod failed or the pod does not run).",
        &[
            "List the etcd members: `kubectl -n kube-system exec etcd-NODE -- etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key member list`",
            "Read kubeadm's message and the kubelet: `journalctl -u kubelet -n 100 --no-pager`",
            "Clean a half-done node before retrying: `kubeadm reset -f`",
            "Check the VIP front from the joiner: `nc -vz 192.0.2.104 6443`",
            "Retry: `kbz-install --start-from-module 10`",
        ],
    ),
    e(
        Code::E066,
        "operations",
        "Another kbz run holds the lock",
        "kbz allows one mutating run (install, uninstall, rollback) per state directory at a \
         time, so two operators or a cron job and an operator never change the same hosts at \
         once. The state directory's run.lock names the run that holds it (command, pid, uid, \
         start time). A lock whose process is gone is stale: its run was killed and may have \
         left a journal to roll back.",
        &[
            "See whether the named process still runs: `ps -p PID -o pid,etime,args`",
            "Wait for it to finish, then run again",
            "For a stale lock, roll back what the killed run left: `kbz-install rollback \
             --inventory servers.tsv`, then remove the lock: `rm .kbz/run.lock`",
        ],
    ),
    e(
        Code::E067,
        "operations",
        "A host is locked by another kbz run",
        "Every mutating run (kbz-install install, uninstall, rollback; kbz-failover run) \
         takes /run/kbz/host.lock on each host it changes, so two controllers, or two state \
         directories on one controller, never change the same host at once. The lock file \
         names its holder (controller, pid, uid, start time, command). A lock left by a run \
         of this controller whose process is gone is named stale: that run was killed and may \
         have left a journal to roll back. /run is cleared at boot, so a reboot frees it too.",
        &[
            "Read the holder on the named host: `ssh HOST cat /run/kbz/host.lock`",
            "On the controller it names, see whether the process still runs: `ps -p PID -o pid,etime,args`",
            "Wait for that run to finish, then run again",
            "For a stale lock, roll back what the killed run left (`kbz-install rollback \
             --inventory servers.tsv`), then remove the lock: `ssh HOST sudo rm /run/kbz/host.lock`",
        ],
    ),
    e(
        Code::E068,
        "operations",
        "A command printed more than the controller keeps",
        "kbz reads what each command prints on a host into memory, up to a cap (64 MiB per \
         stream by default), so a runaway or hostile host cannot exhaust the controller's \
         memory. A command went past it; kbz stopped reading, closed the session and treats the \
         command as failed.",
        &[
            "Run the named command on the host and measure its output: `ssh HOST 'COMMAND | wc -c'`",
            "Look for what floods it (a loop, a huge file printed, a log written to stdout)",
            "Run again once the host prints what it should",
        ],
    ),
    // Failover (kbz-failover, E071-E075): a measured fault cost more than its budget.
    e(
        Code::E071,
        "failover",
        "Acknowledged writes lost in a failover",
        "kbz-failover wrote through the service's VIP while it injected a fault, and after the \
         heal some writes the service had acknowledged were missing (through the VIP or on a \
         member's own copy), more than `[failover]` allows, or two members answered as \
         writable primaries at the same time. With PostgreSQL in synchronous mode no \
         acknowledged commit may be lost: this is data loss to fix, not a figure to accept. \
         Redis replicates asynchronously and may lose what was acknowledged within \
         min-replicas-max-lag before the fault.",
        &[
            "See which run lost what: `kbz-failover run SCENARIO --json | jq '.runs[] | {run, vip, lost_on_member}'`",
            "Check that synchronous mode is on and a sync standby exists: `patronictl -c /etc/patroni/config.yml list` (a `Sync Standby` row) and `[postgres] synchronous_mode = true` in kbz.toml",
            "Look for a second primary in the logs of the run's victim: `journalctl -u patroni --since -1h | grep -i 'promot\\|demot'`",
            "Re-run the scenario after the fix with several runs: `kbz-failover run SCENARIO --runs 20 --yes`",
        ],
    ),
    e(
        Code::E072,
        "failover",
        "Failover slower than its budget",
        "While kbz-failover injected a fault, no write was acknowledged through the VIP for \
         longer than the scenario's budget in `[failover]` (PostgreSQL 35 s after a crash or \
         partition and 5 s on a switchover, Redis 15 s, a VIP 5 s by default). The cluster \
         recovered, but clients waited longer than the operator allows: the leader election, \
         the VIP move or HAProxy's health checks took too long.",
        &[
            "See the gap and the time to a new leader per run: `kbz-failover run SCENARIO --json | jq '.runs[] | {max_write_gap_secs, new_leader_secs}'`",
            "Check Patroni's timing (ttl, loop_wait, retry_timeout): `patronictl -c /etc/patroni/config.yml show-config`",
            "Check HAProxy's checks of the front: `echo 'show stat' | sudo socat stdio /run/haproxy/admin.sock | cut -d, -f1,2,18`",
            "If the budget is stricter than the service can be, raise it in kbz.toml: `[failover] postgres_crash_gap_secs = 45`",
        ],
    ),
    // Preflight (E076-E085): a host does not meet what its roles need, found before any change.
    e(
        Code::E076,
        "preflight",
        "Host below the minimum for its roles",
        "The preflight found a host with fewer CPUs or less memory than its roles need (the \
         largest minimum of the roles it has in servers.tsv: PostgreSQL and MariaDB 2 CPUs and \
         2048 MiB, etcd and Redis 1024 MiB, see `[preflight]` in docs/inventory.md), or with \
         swap on, which module 1 turns off. A database starved of memory swaps, stalls its \
         heartbeats and fails over for no reason, so kbz stops before changing anything.",
        &[
            "See what the host has: `ssh HOST 'nproc; grep -E \"MemTotal|SwapTotal\" /proc/meminfo'`",
            "Give the host more CPUs or memory, or move a role to a bigger host in servers.tsv",
            "If the host is known to be enough for your load, lower the minimum in kbz.toml: \
             `[preflight.roles.postgres] memory_mb = 1024`",
            "Run the checks again without changing anything: `kbz-install preflight --inventory servers.tsv`",
        ],
    ),
    e(
        Code::E077,
        "preflight",
        "A port kbz needs is taken",
        "A port one of kbz's services will listen on (PostgreSQL 5432, Patroni 8008, etcd \
         2379/2380, Redis 6379, Sentinel 26379, HAProxy's fronts and stats) is already held \
         on the host by a program that is not kbz's service (the process is named), or \
         another install of the same service runs that kbz did not make (a Debian default \
         PostgreSQL cluster, a standalone Redis). Installing would fail to bind, or two \
         servers would answer on one address.",
        &[
            "See who holds the port: `ssh HOST sudo ss -ltnp 'sport = :5432'`",
            "Stop and disable the program if it should not run there: `sudo systemctl disable --now UNIT`",
            "For an existing PostgreSQL or Redis that holds data, back it up first (`pg_dumpall`, `redis-cli --rdb`)",
            "Or move the role to another host in servers.tsv, then run `kbz-install preflight` again",
        ],
    ),
    e(
        Code::E078,
        "preflight",
        "Clocks not synchronised or disagreeing",
        "A host's clock is not synchronised by NTP (a warning: module 1 installs chrony), or it \
         differs from the other hosts' clocks by more than `[preflight] max_clock_offset_ms` \
         (500 ms by default). etcd leases, Patroni's leader key TTL and TLS certificate \
         validity all compare times across hosts: clocks that disagree make leaders expire \
         early or never, and certificates look not yet valid.",
        &[
            "See the host's time state: `ssh HOST timedatectl` and `chronyc tracking`",
            "Set the time once and let NTP keep it: `sudo chronyc makestep` (or `sudo timedatectl set-ntp true`)",
            "Point every host at the same servers: `[cluster] ntp_servers` in kbz.toml",
        ],
    ),
    e(
        Code::E079,
        "preflight",
        "Host name or address does not match the inventory",
        "The address servers.tsv gives a host is not configured on any of its interfaces \
         (services bind that address, so they could not start), or the host's name resolves \
         to another address than the inventory's (module 1 writes /etc/hosts, but a DNS \
         answer that differs confuses clients and members that resolve names).",
        &[
            "See the host's addresses and what its name resolves to: `ssh HOST 'ip -br addr; getent ahosts $(hostname)'`",
            "Correct the `ip` column of servers.tsv, or configure the address on the host",
            "Fix the DNS record so the name resolves to the inventory address",
        ],
    ),
    e(
        Code::E080,
        "preflight",
        "Network between quorum members too slow or fragmenting",
        "Between two members of a quorum service (etcd, PostgreSQL, Redis Sentinel and the \
         others) the measured round-trip time is above `[preflight] max_rtt_ms` (10 ms by \
         default), a ping got no answer, a full-size packet with don't-fragment set did not \
         pass (an MTU smaller on the path than on the interfaces), or the members' \
         interfaces have different MTUs. Consensus waits for a majority on every write: \
         latency adds to every commit and lost large packets stall replication. This is a \
         warning; the install goes on.",
        &[
            "Measure it yourself: `ssh HOST ping -c 10 PEER` and `ping -M do -s 1472 -c 3 PEER`",
            "Keep quorum members in one site or low-latency zones; set the same MTU on every member's interface",
            "If the latency is known and accepted, raise the threshold: `[preflight] max_rtt_ms = 30`",
        ],
    ),
    e(
        Code::E081,
        "preflight",
        "Preflight answer unreadable",
        "The preflight script ran on the host but printed a line kbz does not expect, or \
         stopped before its end marker. kbz parses the answer strictly (an unknown line is \
         never ignored), because a check it cannot read is a check that did not pass: a \
         tool on the host behaves differently than on Debian or Ubuntu, or the script was cut.",
        &[
            "Run the checks with the log to see the line: `kbz-install preflight --inventory servers.tsv -v`",
            "Check the host has the standard tools: `ssh HOST 'command -v ss ip getent df ping timedatectl'`",
            "If you must go on anyway, `--skip-preflight` installs without the checks (the summary says so)",
        ],
    ),
];
