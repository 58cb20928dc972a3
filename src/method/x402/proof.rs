//! The x402 receipt of a settlement: a `SettleResponse`, as a [`Proof`].

use http::HeaderName;
use serde_json::json;

use super::error::X402Error;
use super::error::X402ErrorKind;
use super::settle::Settlement;
use super::verify::Verified;
use crate::error::{PaymentError, PaymentErrorKind};
use crate::method::Proof;
use crate::wire::x402::{SettleResponse, encode_header};

/// What a response says while its settlement is still under way.
pub(super) fn pending(verified: &Verified, header: &HeaderName) -> Proof {
    let response = failed_response(verified, "settlement_pending", "pending");
    Proof::pending(to_json(&response)).header(header.clone(), encode_header(&response))
}

/// The proof of a settlement's `outcome` (`None`: nothing was delivered, nothing settled).
pub(super) fn of(verified: &Verified, header: &HeaderName, outcome: Option<&Result<Settlement, X402Error>>) -> Proof {
    match outcome {
        None => {
            let response = SettleResponse {
                success: true,
                payer: Some(verified.payer().to_checksum(None)),
                network: verified.offer().network(),
                amount: Some(crate::amount::Amount::ZERO),
                extensions: Some(extensions(verified, "settled")),
                ..SettleResponse::default()
            };
            Proof::settled(to_json(&response)).header(header.clone(), encode_header(&response))
        }
        Some(Ok(settlement)) => {
            let response = SettleResponse {
                success: true,
                error_reason: None,
                payer: Some(settlement.payer.to_checksum(None)),
                transaction: settlement.transaction.map(|tx| tx.to_string()).unwrap_or_default(),
                network: settlement.network.clone(),
                amount: Some(settlement.amount),
                extensions: Some(extensions(verified, "settled")),
            };
            Proof::settled(to_json(&response)).header(header.clone(), encode_header(&response))
        }
        Some(Err(error)) if error.kind() == X402ErrorKind::SettlementPending => pending(verified, header),
        Some(Err(error)) => {
            let response = failed_response(verified, error.kind().reason(), "failed");
            // x402: a payment that does not settle is answered 402, whatever the cause.
            let problem =
                PaymentError::new(PaymentErrorKind::VerificationFailed, format!("settlement failed: {error}"));
            Proof::failed(problem, to_json(&response)).header(header.clone(), encode_header(&response))
        }
    }
}

fn failed_response(verified: &Verified, reason: &str, status: &str) -> SettleResponse {
    SettleResponse {
        success: false,
        error_reason: Some(reason.into()),
        payer: Some(verified.payer().to_checksum(None)),
        network: verified.offer().network(),
        extensions: Some(extensions(verified, status)),
        ..SettleResponse::default()
    }
}

/// What the receipt adds to the x402 fields: how it ended and the claim to look it up by.
fn extensions(verified: &Verified, status: &str) -> serde_json::Value {
    json!({"status": status, "reference": verified.claim().as_str()})
}

fn to_json(response: &SettleResponse) -> serde_json::Value {
    serde_json::to_value(response).unwrap_or_default()
}
