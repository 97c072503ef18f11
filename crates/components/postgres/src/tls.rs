//! `[security] tls` for PostgreSQL and Patroni: the member's certificate from kbz's CA in
//! `/etc/patroni/tls` (owned by postgres, key 0600), used by Patroni's etcd3 client (etcd
//! requires a client certificate) and by PostgreSQL (`ssl = on`); network access in pg_hba
//! becomes `hostssl` (`reject` lines stay `host`), and Patroni's replication and rewind connections require TLS.

use kbz_core::{Context, Host, Resource};

use kbz_core::ComponentError;

/// The directory of the member's TLS files.
pub const TLS_DIR: &str = "/etc/patroni/tls";
/// The cluster CA.
pub const TLS_CA: &str = "/etc/patroni/tls/ca.crt";
/// The member's certificate (PostgreSQL's server certificate, Patroni's etcd client one).
pub const TLS_CERT: &str = "/etc/patroni/tls/member.crt";
/// The member's key (0600, postgres:postgres, as PostgreSQL requires).
pub const TLS_KEY: &str = "/etc/patroni/tls/member.key";

/// The TLS files (after the packages: the postgres user owns them), or their absence while
/// `[security] tls` is off.
pub fn resources(ctx: &Context, host: &Host) -> Result<Vec<Resource>, ComponentError> {
    let Some((pki, member)) = ctx.tls_member(&host.hostname)? else {
        return Ok([TLS_CA, TLS_CERT, TLS_KEY]
            .map(Resource::absent_file)
            .into());
    };
    let file = |path: &str, content: &str, mode: u32| Resource::File {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        mode,
        owner: "postgres:postgres".into(),
        present: true,
    };
    Ok(vec![
        Resource::Directory {
            path: TLS_DIR.into(),
            mode: 0o750,
            owner: "postgres:postgres".into(),
        },
        file(TLS_CA, pki.ca_pem(), 0o644),
        file(TLS_CERT, &member.cert_pem, 0o644),
        file(TLS_KEY, member.key.expose(), 0o600),
    ])
}

/// The files uninstall removes.
pub fn uninstall() -> Vec<Resource> {
    [TLS_CA, TLS_CERT, TLS_KEY]
        .map(Resource::absent_file)
        .into()
}

/// pg_hba with TLS: every line for a network other than loopback is `hostssl`.
pub fn hostssl(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| {
            let loopback = l.contains(" 127.0.0.1/32 ") || l.contains(" ::1/128 ");
            // A `reject` line stays `host`: it refuses with and without TLS.
            let keep = loopback || l.ends_with(" reject");
            match l.strip_prefix("host ") {
                Some(rest) if !keep => format!("hostssl {rest}"),
                _ => l,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn network_lines_become_hostssl_and_loopback_stays() {
        let out = super::hostssl(vec![
            "local all all peer".into(),
            "host all postgres 0.0.0.0/0 reject".into(),
            "host all all 127.0.0.1/32 scram-sha-256".into(),
            "host all all ::1/128 scram-sha-256".into(),
            "host replication replicator 10.0.0.0/24 scram-sha-256".into(),
            "host all all 10.0.0.0/24 scram-sha-256".into(),
        ]);
        assert_eq!(
            out,
            [
                "local all all peer",
                "host all postgres 0.0.0.0/0 reject",
                "host all all 127.0.0.1/32 scram-sha-256",
                "host all all ::1/128 scram-sha-256",
                "hostssl replication replicator 10.0.0.0/24 scram-sha-256",
                "hostssl all all 10.0.0.0/24 scram-sha-256",
            ]
        );
    }
}
