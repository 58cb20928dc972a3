//! tollgate: a tower middleware that makes any HTTP service payable per use.
//!
//! (Crate docs are filled in with the layer; see README.md.)

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, rust_2018_idioms, missing_debug_implementations)]
#![deny(unreachable_pub, unsafe_code)]

pub mod amount;
mod error;
pub mod meter;
pub mod scheme;
pub mod store;

pub use amount::{Amount, Price, Quote, Rate, Usage};
pub use error::{BoxError, BudgetExhausted, PaymentError, PaymentErrorKind};
