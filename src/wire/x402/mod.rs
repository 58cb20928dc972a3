//! The x402 wire forms (v1 and v2), as the clients send and read them.
//!
//! | | v2 | v1 |
//! |---|---|---|
//! | offers | `PAYMENT-REQUIRED: base64(PaymentRequired)` | JSON body `{x402Version, error, accepts[]}` |
//! | payment | `PAYMENT-SIGNATURE: base64(PaymentPayload)` | `X-PAYMENT: base64(PaymentPayload)` (or raw JSON) |
//! | receipt | `PAYMENT-RESPONSE: base64(SettleResponse)` | `X-PAYMENT-RESPONSE` |
//!
//! Networks are CAIP-2 ids (`eip155:8453`) in v2 and names (`base`) in v1; [`network`]
//! maps between them. Every header is decoded under a size cap ([`MAX_HEADER_LEN`]); what
//! does not decode is a `400` ([`PaymentErrorKind::BadRequest`](crate::PaymentErrorKind)).
//!
//! ```
//! use tollgate::wire::x402::{PaymentRequirements, decode_payment};
//! use base64::Engine as _;
//!
//! let json = br#"{"x402Version":2,"accepted":{"scheme":"exact","network":"eip155:8453",
//!   "amount":"10","asset":"0xA","payTo":"0xB","maxTimeoutSeconds":60},"payload":{"signature":"0x"}}"#;
//! let header = base64::engine::general_purpose::STANDARD.encode(json);
//! let payment = decode_payment(header.as_bytes(), false).unwrap();
//! let accepted: PaymentRequirements = payment.accepted_requirements().unwrap().unwrap();
//! assert_eq!(accepted.amount, tollgate::Amount::new(10));
//! ```

mod envelope;
pub mod network;
mod types;

pub use envelope::{MAX_HEADER_LEN, X402Header, decode_payment, encode_header};
pub use types::{
    PaymentPayload, PaymentRequired, PaymentRequiredV1, PaymentRequirements, PaymentRequirementsV1, Resource,
    SettleResponse,
};

use http::HeaderName;

/// `PAYMENT-REQUIRED`: the v2 offers, base64 JSON [`PaymentRequired`].
pub const PAYMENT_REQUIRED: HeaderName = HeaderName::from_static("payment-required");
/// `PAYMENT-SIGNATURE`: a v2 payment, base64 JSON [`PaymentPayload`].
pub const PAYMENT_SIGNATURE: HeaderName = HeaderName::from_static("payment-signature");
/// `X-PAYMENT`: a v1 payment (base64 JSON, or raw JSON as `@libertai/x402` sends it).
pub const X_PAYMENT: HeaderName = HeaderName::from_static("x-payment");
/// `PAYMENT-RESPONSE`: the v2 receipt, base64 JSON [`SettleResponse`].
pub const PAYMENT_RESPONSE: HeaderName = HeaderName::from_static("payment-response");
/// `X-PAYMENT-RESPONSE`: the v1 receipt.
pub const X_PAYMENT_RESPONSE: HeaderName = HeaderName::from_static("x-payment-response");
