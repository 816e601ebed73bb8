//! Deterministic ids: the same input always names the same thing (command ids from
//! idempotency keys, reservation streams from emails, timers' command ids).

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A UUID (version 8) made of the first 16 bytes of the SHA-256 of `input`.
pub fn derived(input: impl AsRef<[u8]>) -> Uuid {
    let digest = Sha256::digest(input.as_ref());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_input_names_the_same_id_and_another_input_another() {
        assert_eq!(derived("a|b"), derived("a|b"));
        assert_ne!(derived("a|b"), derived("a|c"));
        assert_eq!(derived("x").get_version_num(), 8);
    }
}
