//! The "Payment" HTTP authentication scheme, byte-compatible with the reference SDKs
//! (mppx, mpp-rs).
//!
//! - A server answers `402` with one `WWW-Authenticate: Payment …` [`Challenge`] per
//!   offer. Its `id` is an HMAC over its fields ([`ChallengeSigner`]), so the server
//!   stores nothing, and its `request` is the JCS base64url of a JSON object
//!   ([`encode_request`]).
//! - The client answers with `Authorization: Payment <base64url JSON>`, a [`Credential`]
//!   that echoes the challenge and carries a method-specific proof.
//! - The server checks the echoed id ([`ChallengeSigner::verify`]) and expiry
//!   ([`check_expires`]), lets the method verify the proof, and answers with a
//!   `Payment-Receipt` ([`Receipt`], [`PAYMENT_RECEIPT`]) or an RFC 9457 problem
//!   ([`problem_body`]).
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//!
//! use http::HeaderMap;
//! use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
//! use serde_json::json;
//! use tollgate::wire::mpp::{
//!     Challenge, ChallengeSigner, Credential, check_expires, encode_request, format_expires,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Server: sign and send a challenge.
//! let signer = ChallengeSigner::new("server secret");
//! let mut challenge = Challenge {
//!     id: String::new(),
//!     realm: "api.example.com".into(),
//!     method: "tempo".into(),
//!     intent: "charge".into(),
//!     request: encode_request(&json!({"amount": "1000", "currency": "0x20c0…", "recipient": "0xabc…"})),
//!     description: None,
//!     digest: None,
//!     expires: Some(format_expires(SystemTime::now() + Duration::from_secs(300))),
//!     opaque: None,
//! };
//! challenge.id = signer.id(&challenge.fields());
//! let mut response = HeaderMap::new();
//! response.append(WWW_AUTHENTICATE, challenge.to_header_value()?);
//!
//! // Client: pick a challenge and pay.
//! let offered = Challenge::parse_all(response.get_all(WWW_AUTHENTICATE))?;
//! let credential = Credential {
//!     challenge: offered[0].clone(),
//!     payload: json!({"type": "hash", "hash": "0x…"}),
//!     source: None,
//! };
//! let mut request = HeaderMap::new();
//! request.insert(AUTHORIZATION, credential.to_header_value());
//!
//! // Server: check the echoed challenge.
//! let credential = Credential::from_headers(&request)?.expect("a Payment credential");
//! assert!(signer.verify(&credential.challenge));
//! check_expires(credential.challenge.expires.as_deref(), SystemTime::now())?;
//! assert_eq!(credential.challenge.decode_request()?["amount"], "1000");
//! # Ok(())
//! # }
//! ```

mod accept;
mod challenge;
mod challenge_signer;
mod credential;
mod error;
mod expires;
mod fields;
mod headers;
mod issued;
mod params;
mod problem;
mod quoting;
mod receipt;
mod request;

pub use accept::AcceptPayment;
pub use challenge::Challenge;
pub use challenge_signer::ChallengeSigner;
pub(crate) use challenge_signer::IdPrefix;
pub use credential::Credential;
pub use error::{ChallengeEncodeError, ChallengeParseError, ReceiptParseError};
pub use expires::{check_expires, format_expires};
pub use fields::ChallengeFields;
pub use headers::{ACCEPT_PAYMENT, PAYMENT_AUTHORIZATION, PAYMENT_RECEIPT, set_no_store, set_private_cache};
pub(crate) use issued::{Issued, IssuedChallenges};
pub use problem::{PROBLEM_JSON, ProblemDocument, problem_body};
pub use receipt::Receipt;
pub(crate) use request::decode_base64;
pub use request::{decode_request, encode_request};
