//! The admin kubeconfig a master keeps ([`crate::Flavor::admin_kubeconfig`]): the cluster's
//! CA and the admin client certificate and key, embedded as base64 PEM (`*-data` fields, as
//! both K3s and kubeadm write them). kbz-failover authenticates its API probes through the
//! VIP with them; the key is a [`Secret`] and never printed.

use base64::Engine;
use kbz_core::Secret;

/// The CA and the client identity of an admin kubeconfig.
#[derive(Debug, Clone)]
pub struct AdminCredentials {
    /// The cluster CA (PEM) the API server's certificate chains to.
    pub ca_pem: String,
    /// The client certificate (PEM).
    pub cert_pem: String,
    /// The client key (PEM).
    pub key_pem: Secret,
}

fn field<'a>(v: &'a serde_yaml_ng::Value, path: &[&str]) -> Option<&'a serde_yaml_ng::Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn pem(v: &serde_yaml_ng::Value, path: &[&str], what: &str) -> Result<String, String> {
    let b64 = field(v, path)
        .and_then(|x| x.as_str())
        .ok_or_else(|| format!("the kubeconfig has no {what} (`{}`)", path.join(".")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("the kubeconfig's {what} is not base64: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("the kubeconfig's {what} is not PEM"))?;
    if !text.contains("-----BEGIN ") {
        return Err(format!("the kubeconfig's {what} is not PEM"));
    }
    Ok(text)
}

/// The first cluster's CA and the first user's client certificate and key of `text`. Errors
/// name the missing field, never its content.
pub fn admin_credentials(text: &str) -> Result<AdminCredentials, String> {
    let v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("the kubeconfig is not YAML: {e}"))?;
    let cluster = field(&v, &["clusters"])
        .and_then(|c| c.get(0))
        .ok_or("the kubeconfig lists no cluster")?;
    let user = field(&v, &["users"])
        .and_then(|c| c.get(0))
        .ok_or("the kubeconfig lists no user")?;
    Ok(AdminCredentials {
        ca_pem: pem(
            cluster,
            &["cluster", "certificate-authority-data"],
            "cluster CA",
        )?,
        cert_pem: pem(
            user,
            &["user", "client-certificate-data"],
            "client certificate",
        )?,
        key_pem: Secret::new(pem(user, &["user", "client-key-data"], "client key")?),
    })
}

/// A kubeconfig in the shape K3s and kubeadm write, for tests and tools: one cluster at
/// `server`, one user with the client certificate and key, one context.
pub fn render(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\npreferences: {{}}\nusers:\n- name: default\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b(ca_pem),
        b(cert_pem),
        b(key_pem)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n";

    #[test]
    fn the_embedded_pems_are_read_and_a_missing_field_is_named_not_shown() {
        let text = render("https://127.0.0.1:6443", CA, CA, KEY);
        let c = admin_credentials(&text).expect("creds");
        assert_eq!((c.ca_pem.as_str(), c.cert_pem.as_str()), (CA, CA));
        assert_eq!(c.key_pem.expose(), KEY);
        let no_key = text
            .lines()
            .filter(|l| !l.contains("client-key-data"))
            .collect::<Vec<_>>()
            .join("\n");
        let e = admin_credentials(&no_key).expect_err("no key");
        assert!(e.contains("client key"), "{e}");
        let e = admin_credentials("clusters: []\n").expect_err("empty");
        assert!(e.contains("no cluster"), "{e}");
        let bad = text.replace(
            &base64::engine::general_purpose::STANDARD.encode(KEY),
            "bm90IGEgcGVt",
        );
        let e = admin_credentials(&bad).expect_err("not pem");
        assert!(e.contains("client key is not PEM"), "{e}");
    }
}
