//! Meters: how a response's usage is counted while it streams.
//!
//! A [`MakeMeter`] builds one [`Meter`] per request; the [`MeteredBody`](crate::MeteredBody)
//! feeds it the response as it passes. For `text/event-stream` responses the body hands the
//! meter one complete SSE event at a time ([`Meter::on_event`]), found by the shared
//! incremental [`SseScanner`]; for `application/grpc` responses, one whole length-prefixed
//! message at a time (found by [`GrpcScanner`]); other bodies reach it frame by frame
//! ([`Meter::on_data`]).
//! The meter only reads: bytes are forwarded as they came.
//!
//! Meters report *cumulative* [`Usage`], so a meter can replace a bound with the
//! provider's own count (the OpenAI meter lowers its count to `usage` that way). What a
//! meter reports while the body streams is charged before the bytes go out, so it must
//! never be below what the seller will be billed for them: count an upper bound, and
//! lower it when the real count is known.
//!
//! | meter | unit | counts |
//! |---|---|---|
//! | [`RequestMeter`] | `request` | one per response, at its start |
//! | [`ByteMeter`] | `byte` | body bytes |
//! | [`EventMeter`] | `event` | SSE events with data; comments, keep-alives and `[DONE]` are free |
//! | [`GrpcMessageMeter`] | `message` (or `byte`) | gRPC messages (or their payload bytes); for `application/grpc` responses the body cuts at message boundaries |
//! | [`OpenAiTokenMeter`] | `llm_token` | chat-completion tokens: one per byte of text plus an allowance for hidden output as they stream, lowered to `usage` |

mod bytes;
mod events;
mod grpc;
mod grpc_scanner;
mod openai;
mod requests;
mod sse;
mod sse_field;

pub use self::bytes::ByteMeter;
pub use events::EventMeter;
pub use grpc::GrpcMessageMeter;
pub use grpc_scanner::GrpcScanner;
pub(crate) use grpc_scanner::is_grpc;
pub use openai::OpenAiTokenMeter;
pub use requests::RequestMeter;
pub(crate) use sse::is_event_stream;
pub use sse::{EventTooLarge, SseScanner};
pub use sse_field::{SseField, sse_data, sse_fields};

use ::bytes::Bytes;
use http::{request, response};

use crate::amount::{Quote, Usage};

/// Counts one response's usage. See the [module docs](self).
pub trait Meter: Send + 'static {
    /// Called once with the response head; returns the usage known before any body
    /// (one request for [`RequestMeter`], the quoted prompt tokens for an LLM meter).
    fn on_response(&mut self, head: &response::Parts) -> Usage;

    /// Called with each data frame of a non-SSE body; returns the cumulative usage.
    fn on_data(&mut self, data: &[u8]) -> Usage;

    /// Called with each complete SSE event of an SSE body, line ends included (the
    /// blank line that ends it too), or each whole message of a gRPC body, its 5-byte
    /// prefix included; returns the cumulative usage.
    fn on_event(&mut self, event: &[u8]) -> Usage {
        self.on_data(event)
    }

    /// Called when the body has ended; returns the final usage (reconciled where the meter
    /// learned the real count at the end, as from a JSON `usage` object).
    fn on_end(&mut self) -> Usage;

    /// Bytes that end an SSE stream cleanly when the budget stops it (for OpenAI streams a
    /// chunk with `finish_reason: "length"` and `data: [DONE]`). `None` when the meter
    /// knows no clean ending; the body then ends with a
    /// [`BudgetExhausted`](crate::BudgetExhausted) error where a clean end is required.
    fn cutoff(&self) -> Option<Bytes> {
        None
    }
}

/// Builds a [`Meter`] for each request. See the [module docs](self).
pub trait MakeMeter: Send + Sync + 'static {
    /// The meter it builds.
    type Meter: Meter;

    /// The meter for a request priced at `quote`.
    fn make_meter(&self, request: &request::Parts, quote: &Quote) -> Self::Meter;
}

impl<M, F> MakeMeter for F
where
    F: Fn(&request::Parts, &Quote) -> M + Send + Sync + 'static,
    M: Meter,
{
    type Meter = M;

    fn make_meter(&self, request: &request::Parts, quote: &Quote) -> M {
        self(request, quote)
    }
}
