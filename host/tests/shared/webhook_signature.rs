//! Signs a webhook delivery the way Standard Webhooks says, independently of
//! the host's verifier. Shared by the integration tests and the service
//! bench (each includes this file with `#[path]`).

use base64::Engine as _;
use hmac::{Hmac, Mac};

/// The `webhook-signature` of the delivery `id` sent at `ts` with `body`,
/// signed with `secret` (`whsec_` and the base64 key).
pub fn sign(secret: &str, id: &str, ts: u64, body: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}
