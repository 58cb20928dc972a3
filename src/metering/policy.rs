//! [`StreamPolicy`]: how a metered stream asks for more and how long it waits.

use std::time::Duration;

/// How a metered stream asks for more and how long it waits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamPolicy {
    /// Units of headroom asked for beyond the next frame's cost, at most.
    pub(crate) window_units: u64,
    /// ... and at first: asks grow with the stream from this to `window_units`.
    pub(crate) first_window_units: u64,
    /// How long a paused stream waits for a voucher before it ends.
    pub(crate) pause_deadline: Duration,
    /// How long a stream that has delivered nothing yet waits for its first voucher (the
    /// upfront asked for in the stream); `None`: the pause deadline.
    pub(crate) first_voucher_deadline: Option<Duration>,
    /// How often a paused stream sends a keep-alive comment.
    pub(crate) keep_alive: Duration,
    /// The longest SSE event the upstream may send, in bytes.
    pub(crate) max_event_bytes: usize,
    /// The longest plain answer held back while its payment settles, in bytes.
    pub(crate) held_answer_bytes: usize,
    /// How long a response waits for its settlement's proof before it reports it `pending`.
    pub(crate) proof_wait: Duration,
}

impl StreamPolicy {
    /// How long a stream waits for the voucher that covers its upfront.
    pub(crate) fn first_deadline(&self) -> Duration {
        self.first_voucher_deadline.unwrap_or(self.pause_deadline)
    }
}
