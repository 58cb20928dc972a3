//! The EIP-4361 (Sign-In with Ethereum) message a SIWX proof signs, rebuilt from the
//! proof's fields exactly as the `siwe` library the x402 client helpers use writes it.

use super::SiwxPayload;

/// The message `payload` claims to have signed, for `chain` (its numeric EIP-155 id).
pub(super) fn eip4361(payload: &SiwxPayload, chain: u64) -> String {
    let mut message =
        format!("{} wants you to sign in with your Ethereum account:\n{}\n\n", payload.domain, payload.address);
    if let Some(statement) = &payload.statement {
        message.push_str(statement);
        message.push_str("\n\n");
    } else {
        message.push('\n');
    }
    message.push_str(&format!(
        "URI: {}\nVersion: {}\nChain ID: {chain}\nNonce: {}\nIssued At: {}",
        payload.uri, payload.version, payload.nonce, payload.issued_at
    ));
    if let Some(expires) = &payload.expiration_time {
        message.push_str(&format!("\nExpiration Time: {expires}"));
    }
    if let Some(not_before) = &payload.not_before {
        message.push_str(&format!("\nNot Before: {not_before}"));
    }
    if let Some(request_id) = &payload.request_id {
        message.push_str(&format!("\nRequest ID: {request_id}"));
    }
    if let Some(resources) = &payload.resources {
        message.push_str("\nResources:");
        for resource in resources {
            message.push_str(&format!("\n- {resource}"));
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_eip4361_layout() {
        let payload: SiwxPayload = serde_json::from_value(serde_json::json!({
            "domain": "api.example.com", "address": "0x1111111111111111111111111111111111111111",
            "uri": "https://api.example.com/v1/sign-in", "version": "1", "chainId": "eip155:8453",
            "type": "eip191", "nonce": "abcdef0123", "issuedAt": "2026-01-01T00:00:00Z",
            "expirationTime": "2026-01-01T00:05:00Z", "signature": "0x"
        }))
        .unwrap();
        assert_eq!(
            eip4361(&payload, 8453),
            "api.example.com wants you to sign in with your Ethereum account:\n\
             0x1111111111111111111111111111111111111111\n\n\n\
             URI: https://api.example.com/v1/sign-in\nVersion: 1\nChain ID: 8453\nNonce: abcdef0123\n\
             Issued At: 2026-01-01T00:00:00Z\nExpiration Time: 2026-01-01T00:05:00Z"
        );
    }
}
