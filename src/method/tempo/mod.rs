//! The Tempo payment method (`method="tempo"`): payment-channel sessions and charges.
//! (Being written.)

pub mod chain;
mod channel_id;
mod charge;
mod config;
mod domain;
pub(crate) mod escrow;
mod payload;
mod session;
mod signature;
pub mod tx;
#[cfg(test)]
mod vectors;
mod voucher;

pub use chain::{RpcChain, TempoChain};
pub use channel_id::ChannelDescriptor;
pub use charge::{ChargeConfig, ChargeConfigError, ChargeModes, Split, TempoCharge, attribution_memo};
pub use charge::{ChargePayload, ChargeRequest};
pub use config::{CHANNEL_RESERVE, PATH_USD, SessionConfig};
pub use domain::{SessionProtocol, VoucherDomain};
pub use payload::{OpenPayload, SessionPayload, TopUpPayload, VoucherPayload};
pub use session::{Remembered, SessionDetails, SessionRequest, SettlementPolicy, SettlementReport, TempoSession};
pub use signature::{SignatureError, VoucherSignature, VoucherSignatureKind};
pub use voucher::verify_voucher;
