//! Authentication: a key file (refused early when passphrase-protected) or ssh-agent.

use super::*;

pub(super) fn authenticate(
    session: &Session,
    ep: &Endpoint,
    opts: &SshOptions,
) -> Result<(), ExecError> {
    let auth_err = |reason: String| ExecError::Auth {
        host: ep.addr.clone(),
        user: ep.user.clone(),
        reason,
    };
    if let Some(key) = &opts.key {
        check_key_file(key)?;
        session
            .userauth_pubkey_file(&ep.user, None, key, None)
            .map_err(|e| {
                if e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_FILE) {
                    ExecError::Key {
                        path: key.display().to_string(),
                        reason: e.message().to_string(),
                    }
                } else {
                    auth_err(format!(
                        "the server rejected the key {}: {}",
                        key.display(),
                        e.message()
                    ))
                }
            })?;
    } else {
        let mut agent = session
            .agent()
            .map_err(|e| auth_err(format!("cannot use ssh-agent: {}", e.message())))?;
        if let Some(sock) = &opts.agent_socket {
            agent
                .set_identity_path(sock)
                .map_err(|e| auth_err(format!("bad agent socket path: {}", e.message())))?;
        }
        agent.connect().map_err(|e| {
            auth_err(format!(
                "no key file is configured ([ssh] key) and ssh-agent is not reachable (is SSH_AUTH_SOCK set?): {}",
                e.message()
            ))
        })?;
        agent
            .list_identities()
            .map_err(|e| auth_err(format!("cannot list ssh-agent keys: {}", e.message())))?;
        let ids = agent
            .identities()
            .map_err(|e| auth_err(format!("cannot list ssh-agent keys: {}", e.message())))?;
        if ids.is_empty() {
            let _ = agent.disconnect();
            return Err(auth_err("ssh-agent holds no keys (ssh-add -l)".into()));
        }
        let accepted = ids.iter().any(|id| agent.userauth(&ep.user, id).is_ok());
        let _ = agent.disconnect();
        if !accepted {
            return Err(auth_err(format!(
                "the server accepted none of the {} key(s) in ssh-agent",
                ids.len()
            )));
        }
    }
    if session.authenticated() {
        Ok(())
    } else {
        Err(auth_err(
            "the server did not complete authentication".into(),
        ))
    }
}

/// Rejects key files libssh2 would fail on with a vague message: missing, public halves,
/// passphrase-protected keys. Never shows any of the file's content.
pub(super) fn check_key_file(path: &Path) -> Result<(), ExecError> {
    let key_err = |reason: String| ExecError::Key {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| key_err(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("PRIVATE KEY-----") {
        return Err(key_err(
            "the file is not a private key (is it the .pub file?)".into(),
        ));
    }
    if text.contains("ENCRYPTED") || openssh_key_is_encrypted(&text) {
        return Err(key_err(
            "the key is protected by a passphrase; load it into ssh-agent (ssh-add) and remove `key` from [ssh]".into(),
        ));
    }
    Ok(())
}

/// True when an `OPENSSH PRIVATE KEY` names a cipher other than `none`.
pub(super) fn openssh_key_is_encrypted(text: &str) -> bool {
    let Some(start) = text.find("-----BEGIN OPENSSH PRIVATE KEY-----") else {
        return false;
    };
    let body = &text[start + "-----BEGIN OPENSSH PRIVATE KEY-----".len()..];
    let body = body.split("-----END").next().unwrap_or("");
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return false;
    };
    let Some(rest) = raw.strip_prefix(b"openssh-key-v1\0") else {
        return false;
    };
    match read_ssh_string(rest) {
        Some((cipher, _)) => cipher != b"none",
        None => false,
    }
}

/// Reads one SSH wire-format string (u32 length, bytes).
pub(super) fn read_ssh_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let s = data.get(4..4 + len)?;
    Some((s, &data[4 + len..]))
}
