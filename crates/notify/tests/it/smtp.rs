//! Runs the real SMTP server of `smtp_server.py` (python3 + aiosmtpd) as a child process on
//! 127.0.0.1 and reads back the messages it received.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A self-signed certificate for 127.0.0.1 / localhost, written as PEM files.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCert {
    pub fn new() -> TestCert {
        let dir = tempfile::tempdir().expect("tempdir");
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .expect("generate certificate");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).expect("write cert");
        std::fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");
        TestCert {
            cert,
            key,
            _dir: dir,
        }
    }
}

/// A running SMTP server; killed (by its pid, through the child handle) when dropped.
pub struct SmtpServer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// The first python3 that can import aiosmtpd (Debian's /usr/bin/python3 first, since a
/// python3 earlier on PATH, e.g. from pyenv, lacks the Debian package).
fn python() -> PathBuf {
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return PathBuf::from(candidate);
        }
    }
    panic!("the SMTP tests need python3 with aiosmtpd: `apt-get install python3-aiosmtpd`");
}

impl SmtpServer {
    /// Starts a server in `mode` (`plain`, `starttls`, `tls`), requiring `auth` when given.
    pub fn start(mode: &str, auth: Option<(&str, &str)>, cert: Option<&TestCert>) -> SmtpServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_server.py");
        let mut cmd = Command::new(python());
        // aiosmtpd warns about its own deprecations and about AUTH under implicit TLS.
        cmd.env("PYTHONWARNINGS", "ignore");
        cmd.arg(&script).arg(dir.path()).arg(mode);
        if let Some(c) = cert {
            cmd.arg(&c.cert).arg(&c.key);
        }
        // Credentials go through the environment, never the command line.
        if let Some((u, p)) = auth {
            cmd.env("KBZ_TEST_SMTP_USER", u)
                .env("KBZ_TEST_SMTP_PASSWORD", p);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start smtp_server.py");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("smtp_server.py did not start within 20 s");
            }
        };
        let port: u16 = match line.trim().parse() {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "smtp_server.py printed `{}` instead of its port",
                    line.trim()
                );
            }
        };
        // Wait until the port accepts connections.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "port {port} never opened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        SmtpServer { port, child, dir }
    }

    /// The messages received so far, in order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix("msg-"))
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        });
        files
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("read message"))
                    .expect("message JSON")
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
