//! The cluster's own certificate authority (`[security] tls = true`): a CA generated on the
//! controller with rcgen and kept in `STATE_DIR/tls/` (the key 0600, written with
//! [`crate::secret::write_private`]), and one certificate per member (SANs: its hostname and
//! inventory address, plus `localhost` and 127.0.0.1 for local clients), valid for server and
//! client authentication. Members' certificates are made once and kept, so a re-run changes
//! nothing; one is made again only when the member's names change. Private keys are
//! [`Secret`]s: they print as `****`, and [`Pki::patterns`] hands every line of them to the
//! redactor.

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::secret::{write_private, Secret};

/// A failure to make, read or keep the CA or a member certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file of `STATE_DIR/tls` could not be read or written.
    #[error("{path}: {source}; check the state directory's permissions (it must be writable by the user running kbz)")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// rcgen refused to make or read a key or certificate.
    #[error("{what}: {reason}; remove {dir}/ to make a new CA (every member then gets new certificates on the next run)")]
    Crypto {
        /// What was being made or read.
        what: String,
        /// rcgen's message.
        reason: String,
        /// The tls directory.
        dir: String,
    },
}

impl kbz_errors::HasCode for PkiError {
    fn code(&self) -> kbz_errors::Code {
        match self {
            PkiError::Io { .. } => kbz_errors::Code::E028,
            PkiError::Crypto { .. } => kbz_errors::Code::E052,
        }
    }
}

/// One member's certificate and key.
#[derive(Debug, Clone)]
pub struct MemberCert {
    /// PEM certificate, signed by the CA.
    pub cert_pem: String,
    /// PEM (PKCS#8) private key.
    pub key: Secret,
}

/// The CA and every member's certificate.
#[derive(Debug, Clone)]
pub struct Pki {
    ca_pem: String,
    ca_key: Secret,
    members: BTreeMap<String, MemberCert>,
}

/// A member to certify: its hostname and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Hostname (a DNS SAN and the subject's common name).
    pub hostname: String,
    /// Inventory address (an IP SAN).
    pub ip: IpAddr,
    /// Other addresses clients reach it on (the PostgreSQL VIP, through HAProxy).
    pub extra_ips: Vec<IpAddr>,
}

impl Member {
    /// Every host that needs a certificate: the etcd and PostgreSQL members; a PostgreSQL
    /// member's certificate also names `[vips] postgres`, so clients through the VIP can
    /// verify it.
    pub fn of_inventory(inv: &crate::inventory::Inventory, cfg: &crate::Config) -> Vec<Member> {
        use crate::inventory::Role;
        inv.hosts
            .iter()
            .filter(|h| h.has(Role::Etcd) || h.has(Role::Postgres))
            .map(|h| Member {
                hostname: h.hostname.clone(),
                ip: h.ip,
                extra_ips: match cfg.vips.get("postgres") {
                    Some(vip) if h.has(Role::Postgres) => vec![*vip],
                    _ => Vec::new(),
                },
            })
            .collect()
    }

    fn sans(&self) -> String {
        let extra: String = self.extra_ips.iter().map(|ip| format!(" {ip}")).collect();
        format!("{} {}{extra} localhost 127.0.0.1\n", self.hostname, self.ip)
    }
}

const YEARS: i32 = 10;

fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

fn validity(p: &mut CertificateParams) {
    let y = this_year();
    p.not_before = date_time_ymd(y - 1, 1, 1);
    p.not_after = date_time_ymd(y + YEARS, 1, 1);
}

/// The CA's parameters: always the same for a cluster, so the stored key signs as the stored
/// certificate's subject.
fn ca_params(cluster: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("kbz CA {cluster}"));
    dn.push(DnType::OrganizationName, "kbz");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p);
    p
}

impl Pki {
    /// Makes a CA and certificates in memory only (a dry-run, or no state directory).
    pub fn in_memory(cluster: &str, members: &[Member]) -> Result<Pki, PkiError> {
        Pki::build(None, cluster, members, false)
    }

    /// Reads `dir` (`STATE_DIR/tls`), making the CA and any missing or outdated member
    /// certificate; with `persist` they are saved (keys 0600, certificates 0644), without it
    /// (a dry-run) what is missing lives in memory only and nothing is written.
    pub fn load_or_create(
        dir: &Path,
        cluster: &str,
        members: &[Member],
        persist: bool,
    ) -> Result<Pki, PkiError> {
        Pki::build(Some(dir), cluster, members, persist)
    }

    fn build(
        dir: Option<&Path>,
        cluster: &str,
        members: &[Member],
        persist: bool,
    ) -> Result<Pki, PkiError> {
        let shown = dir.map(|d| d.display().to_string()).unwrap_or_default();
        let crypto = |what: &str, e: rcgen::Error| PkiError::Crypto {
            what: what.into(),
            reason: e.to_string(),
            dir: shown.clone(),
        };
        let read = |name: &str| -> Result<Option<String>, PkiError> {
            let Some(d) = dir else { return Ok(None) };
            let path = d.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(PkiError::Io { path, source }),
            }
        };
        let write = |name: &str, data: &str, public: bool| -> Result<(), PkiError> {
            let Some(d) = dir.filter(|_| persist) else {
                return Ok(());
            };
            let path = d.join(name);
            let io = |source| PkiError::Io {
                path: path.clone(),
                source,
            };
            write_private(&path, data.as_bytes()).map_err(io)?;
            if public {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                    .map_err(io)?;
            }
            Ok(())
        };

        let (ca_key, ca_pem) = match (read("ca.key")?, read("ca.crt")?) {
            (Some(k), Some(c)) => (KeyPair::from_pem(&k).map_err(|e| crypto("ca.key", e))?, c),
            _ => {
                let k = KeyPair::generate().map_err(|e| crypto("the CA key", e))?;
                let c = ca_params(cluster)
                    .self_signed(&k)
                    .map_err(|e| crypto("the CA certificate", e))?;
                write("ca.key", &k.serialize_pem(), false)?;
                write("ca.crt", &c.pem(), true)?;
                (k, c.pem())
            }
        };
        // The issuer as rcgen needs it: the same subject and key as the stored certificate.
        let issuer = ca_params(cluster)
            .self_signed(&ca_key)
            .map_err(|e| crypto("the CA certificate", e))?;

        let mut out = BTreeMap::new();
        for m in members {
            let (crt, key, san) = (
                format!("{}.crt", m.hostname),
                format!("{}.key", m.hostname),
                format!("{}.san", m.hostname),
            );
            let kept = match (read(&crt)?, read(&key)?, read(&san)?) {
                (Some(c), Some(k), Some(s)) if s == m.sans() => Some((c, k)),
                _ => None,
            };
            let (cert_pem, key_pem) = match kept {
                Some(pair) => pair,
                None => {
                    let k = KeyPair::generate().map_err(|e| crypto("a member key", e))?;
                    let mut p = CertificateParams::default();
                    let mut dn = DistinguishedName::new();
                    dn.push(DnType::CommonName, m.hostname.clone());
                    dn.push(DnType::OrganizationName, "kbz");
                    p.distinguished_name = dn;
                    let dns = |n: &str| {
                        n.to_string()
                            .try_into()
                            .map(SanType::DnsName)
                            .map_err(|e| crypto(&format!("the name {n}"), e))
                    };
                    p.subject_alt_names = vec![dns(&m.hostname)?, SanType::IpAddress(m.ip)];
                    p.subject_alt_names
                        .extend(m.extra_ips.iter().map(|ip| SanType::IpAddress(*ip)));
                    p.subject_alt_names.extend([
                        dns("localhost")?,
                        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
                    ]);
                    p.key_usages = vec![
                        KeyUsagePurpose::DigitalSignature,
                        KeyUsagePurpose::KeyEncipherment,
                    ];
                    p.extended_key_usages = vec![
                        ExtendedKeyUsagePurpose::ServerAuth,
                        ExtendedKeyUsagePurpose::ClientAuth,
                    ];
                    validity(&mut p);
                    let c = p
                        .signed_by(&k, &issuer, &ca_key)
                        .map_err(|e| crypto(&format!("the certificate of {}", m.hostname), e))?;
                    write(&key, &k.serialize_pem(), false)?;
                    write(&crt, &c.pem(), true)?;
                    write(&san, &m.sans(), true)?;
                    (c.pem(), k.serialize_pem())
                }
            };
            out.insert(
                m.hostname.clone(),
                MemberCert {
                    cert_pem,
                    key: Secret::new(key_pem),
                },
            );
        }
        Ok(Pki {
            ca_pem,
            ca_key: Secret::new(ca_key.serialize_pem()),
            members: out,
        })
    }

    /// The CA certificate (PEM), the trust anchor every member and client gets.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A member's certificate and key.
    pub fn member(&self, hostname: &str) -> Option<&MemberCert> {
        self.members.get(hostname)
    }

    /// What the redactor must mask: every private key whole and, line by line, the part of
    /// its base64 that encodes the secret scalar (a file diff shows keys line by line; the
    /// rest of a PKCS#8 key is the algorithm and the public key, which certificates hold too).
    pub fn patterns(&self) -> Vec<String> {
        let mut out = Vec::new();
        for k in std::iter::once(&self.ca_key).chain(self.members.values().map(|m| &m.key)) {
            out.push(k.expose().to_string());
            out.extend(secret_runs(k.expose()));
        }
        out
    }
}

/// The runs of base64 characters of a PEM key, within one line each, that encode only bytes
/// of the private scalar (an EC key's `02 01 01 04 20` + 32 bytes); every body line when the
/// key has another shape.
fn secret_runs(pem: &str) -> Vec<String> {
    use base64::Engine;
    let lines: Vec<&str> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(lines.concat())
        .unwrap_or_default();
    let Some(start) = der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .map(|i| i + 5)
        .filter(|s| s + 32 <= der.len())
    else {
        return lines.iter().map(|l| l.to_string()).collect();
    };
    let secret = start..start + 32;
    let mut out = Vec::new();
    let mut index = 0usize;
    for line in lines {
        let mut run = String::new();
        for c in line.chars() {
            let (first, last) = (index * 6 / 8, (index * 6 + 5) / 8);
            if secret.contains(&first) && secret.contains(&last) {
                run.push(c);
            } else if !run.is_empty() {
                out.push(std::mem::take(&mut run));
            }
            index += 1;
        }
        if !run.is_empty() {
            out.push(run);
        }
    }
    out.retain(|r| r.len() >= 8);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Member> {
        vec![
            Member {
                hostname: "db1".into(),
                ip: "192.0.2.21".parse().expect("ip"),
                extra_ips: vec!["192.0.2.100".parse().expect("vip")],
            },
            Member {
                hostname: "db2".into(),
                ip: "192.0.2.22".parse().expect("ip"),
                extra_ips: Vec::new(),
            },
        ]
    }

    #[test]
    fn a_kept_ca_is_reused_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let tls = dir.path().join("tls");
        let dry = Pki::load_or_create(&tls, "prod", &members(), false).expect("dry-run");
        assert!(dry.ca_pem().contains("CERTIFICATE") && !tls.exists());
        let a = Pki::load_or_create(&tls, "prod", &members(), true).expect("create");
        let b = Pki::load_or_create(&tls, "prod", &members(), false).expect("load");
        assert_eq!(a.ca_pem(), b.ca_pem());
        assert_eq!(
            a.member("db1").map(|m| &m.cert_pem),
            b.member("db1").map(|m| &m.cert_pem)
        );
        for f in ["ca.key", "db1.key", "db2.key"] {
            let mode = std::fs::metadata(tls.join(f))
                .expect(f)
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert_eq!(
            std::fs::metadata(&tls).expect("dir").permissions().mode() & 0o777,
            0o700
        );
        // A member whose address changed gets a new certificate; the CA stays.
        let mut moved = members();
        moved[0].ip = "192.0.2.99".parse().expect("ip");
        let c = Pki::load_or_create(&tls, "prod", &moved, true).expect("moved");
        assert_eq!(c.ca_pem(), a.ca_pem());
        assert_ne!(
            c.member("db1").map(|m| &m.cert_pem),
            a.member("db1").map(|m| &m.cert_pem)
        );
        assert_eq!(
            c.member("db2").map(|m| &m.cert_pem),
            a.member("db2").map(|m| &m.cert_pem)
        );
        // Keys print masked, and the redactor learns every line of them.
        let key = a.member("db1").expect("db1").key.clone();
        assert_eq!(format!("{key:?} {key}"), "**** ****");
        let patterns = a.patterns();
        // The scalar (bits 288-543 of the DER): characters 48-89, cut by the line break at 64.
        let runs = secret_runs(key.expose());
        assert_eq!(runs.iter().map(String::len).sum::<usize>(), 42, "{runs:?}");
        for r in &runs {
            assert!(patterns.contains(r), "{r}");
            assert!(key.expose().lines().any(|l| l.contains(r.as_str())));
        }
        let redactor = crate::redact::Redactor::new(patterns);
        for line in key.expose().lines().filter(|l| !l.starts_with("-----")) {
            let masked = redactor.redact(line);
            assert!(masked.contains("****") || !runs.iter().any(|r| line.contains(r.as_str())));
        }
        let m = a.member("db1").expect("db1");
        for public in [a.ca_pem(), m.cert_pem.as_str()] {
            assert!(!redactor.leaks(public), "a certificate would be masked");
        }
    }

    #[test]
    fn in_memory_writes_nothing() {
        let pki = Pki::in_memory("prod", &members()).expect("pki");
        assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki
            .member("db2")
            .is_some_and(|m| m.key.expose().contains("PRIVATE KEY")));
    }
}
