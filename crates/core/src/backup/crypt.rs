//! Encryption at rest of the artifacts kbz stores: age (the maintained `age` crate) with a
//! passphrase recipient whose passphrase is the secrets file's `backup_encryption` key (32
//! random characters, generated on first use, never printed: the session's redactor knows
//! it like every secret). Encryption and decryption happen on the controller, so the key
//! never reaches a host.

use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// The secrets-file name of the encryption key.
pub const KEY_SECRET: &str = "backup_encryption";

/// scrypt work factor (log2 N) of new artifacts: the key is random, so the passphrase
/// stretching only needs to be cheap and fixed.
const WORK_FACTOR: u8 = 12;

/// The highest work factor decryption accepts (refuses a doctored header that would make it
/// spin).
const MAX_WORK_FACTOR: u8 = 18;

/// The lowercase hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Encrypts `plain` with `key` (age, binary format).
pub fn encrypt(key: &Secret, plain: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = age::scrypt::Recipient::new(key.expose().to_string().into());
    r.set_work_factor(WORK_FACTOR);
    age::encrypt(&r, plain).map_err(|e| format!("cannot encrypt: {e}"))
}

/// Decrypts what [`encrypt`] made; a wrong key or a damaged file is an error.
pub fn decrypt(key: &Secret, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut id = age::scrypt::Identity::new(key.expose().to_string().into());
    id.set_max_work_factor(MAX_WORK_FACTOR);
    age::decrypt(&id, data).map_err(|e| {
        format!(
            "cannot decrypt ({e}): the file is damaged, or the secrets file's \
             `{KEY_SECRET}` is not the key it was encrypted with"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_and_wrong_key() {
        let key = Secret::generate(32);
        let plain = b"etcd snapshot bytes".repeat(100);
        let sealed = encrypt(&key, &plain).expect("encrypt");
        assert!(!sealed.windows(19).any(|w| w == b"etcd snapshot bytes"));
        assert_eq!(decrypt(&key, &sealed).expect("decrypt"), plain);
        let mut flipped = sealed.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 1;
        assert!(decrypt(&key, &flipped).is_err());
        let other = Secret::generate(32);
        let e = decrypt(&other, &sealed).expect_err("wrong key");
        assert!(e.contains(KEY_SECRET), "{e}");
        assert!(!e.contains(key.expose()));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
