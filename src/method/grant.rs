//! [`Grant`]: what a verified payment lets a response draw on.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use super::Proof;
use crate::amount::Amount;
use crate::store::{ChannelId, ChannelState};
use crate::wire::mpp::Receipt;

/// What a verified credential funds: the store channel a response draws on, who pays, and
/// how to ask for more when the headroom runs out.
///
/// See the [crate docs](crate) for an example.
pub struct Grant {
    channel: ChannelId,
    payer: Option<String>,
    renewal: Renewal,
    receipt: Receipt,
    on_settled: Option<SettledHook>,
    usage_record: Option<UsageHook>,
    /// The record head a reclaim of the reservation completes (see `record_reclaimed`).
    usage_head: Option<bytes::Bytes>,
    reserve_whole: Option<Amount>,
    /// What the response says while its proof is late (see [`Grant::proven_by`]).
    // Boxed: most grants prove nothing, and `Verified` carries a grant by value.
    pending_proof: Option<Box<Proof>>,
    gate: Option<Gate>,
    settle_by: Option<SystemTime>,
}

/// A settlement under way, whose outcome the response reports.
pub(crate) type Proving = Pin<Box<dyn Future<Output = Proof> + Send>>;

/// A settlement an SSE stream waits for before its first content goes out.
pub(crate) type Gate = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<(), Proof>> + Send>> + Send>;

/// The hook a grant runs once its response is settled; `Some` when it proves the payment.
pub(crate) type SettledHook = Box<dyn FnOnce(Settled) -> Option<Proving> + Send>;

/// What makes a response's usage record from what it used and its units.
pub(crate) type UsageHook = Box<dyn FnOnce(Amount, u64) -> bytes::Bytes + Send>;

/// How a stream gets more headroom once what was paid for is used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Renewal {
    /// A payment channel: an SSE stream emits one `payment-need-voucher` event, pauses,
    /// and resumes on the same connection when a voucher raises the channel's headroom.
    Voucher,
    /// A one-shot payment: the stream ends cleanly when the headroom runs out.
    Never,
}

/// What a response finally used, reported once after its last store write.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settled {
    /// The channel that paid.
    pub channel: ChannelId,
    /// What this response used.
    pub used: Amount,
    /// Units this response delivered.
    pub units: u64,
    /// The channel's state after the final commit (`None` if the store failed).
    pub state: Option<ChannelState>,
}

impl Grant {
    /// A grant drawing on `channel`; `receipt` is the template of the receipts this
    /// response sends (the layer fills in `spent`, `acceptedCumulative`, `units` and the
    /// timestamp from the store).
    pub fn new(channel: ChannelId, renewal: Renewal, receipt: Receipt) -> Self {
        Grant {
            channel,
            payer: None,
            renewal,
            receipt,
            on_settled: None,
            usage_record: None,
            usage_head: None,
            reserve_whole: None,
            pending_proof: None,
            gate: None,
            settle_by: None,
        }
    }

    /// Names the payer (an address or DID), for extensions and logs.
    pub fn payer(mut self, payer: impl Into<String>) -> Self {
        self.payer = Some(payer.into());
        self
    }

    /// A hook run once when the response's usage is final (end, error or client gone),
    /// after the store commit: x402 `upto` settles the actual amount here. It runs on the
    /// runtime and must not block or panic.
    pub fn on_settled(mut self, hook: impl FnOnce(Settled) + Send + 'static) -> Self {
        self.on_settled = Some(Box::new(move |settled| {
            hook(settled);
            None
        }));
        self.pending_proof = None;
        self
    }

    /// A settlement the response waits for and reports: once the response's usage is final
    /// (after the store commit, as [`on_settled`](Self::on_settled)), `hook` starts a
    /// settlement whose [`Proof`] the client gets.
    ///
    /// - A plain (non-SSE) 2xx response is held back: its body is read whole (up to the
    ///   layer's [`held_answer_limit`](crate::PaymentLayer::held_answer_limit)), metered and settled before the head goes out, which then
    ///   carries the proof's header; a [`Failed`](super::ProofStatus::Failed) proof answers
    ///   its error (`402`) and delivers nothing.
    /// - An SSE stream ends with a `payment-receipt` event carrying the proof's data; if the
    ///   settlement takes longer than the layer's
    ///   [`proof_wait`](crate::PaymentLayer::proof_wait), it carries `pending` instead.
    ///
    /// The settlement runs to its end whether or not anyone waits for it (a client gone
    /// mid-stream still pays what it received), exactly once.
    ///
    /// ```
    /// use serde_json::json;
    /// use tollgate::method::{Grant, Proof, Renewal};
    /// use tollgate::store::ChannelId;
    /// use tollgate::wire::mpp::Receipt;
    ///
    /// let grant = Grant::new(ChannelId::new("claim-1"), Renewal::Never, Receipt::new("demo", "claim-1"))
    ///     .proven_by(Proof::pending(json!({"status": "pending"})), |settled| async move {
    ///         // Move `settled.used` to the payee here.
    ///         Proof::settled(json!({"success": true, "amount": settled.used}))
    ///     });
    /// # let _ = grant;
    /// ```
    pub fn proven_by<F>(mut self, pending: Proof, hook: impl FnOnce(Settled) -> F + Send + 'static) -> Self
    where
        F: Future<Output = Proof> + Send + 'static,
    {
        self.on_settled = Some(Box::new(move |settled| Some(Box::pin(hook(settled)) as Proving)));
        self.pending_proof = Some(Box::new(pending));
        self
    }

    /// Records the response's usage on its channel in the same store step that debits it
    /// ([`ChannelStore::release_with_usage`](crate::store::ChannelStore::release_with_usage)),
    /// so a balance and its usage history never drift apart: `record` makes the record
    /// from what the response used and the units it delivered. A prepaid balance's usage
    /// endpoint reads these records. It runs once, on the runtime, and must not block.
    pub fn record_usage(mut self, record: impl FnOnce(Amount, u64) -> bytes::Bytes + Send + 'static) -> Self {
        self.usage_record = Some(Box::new(record));
        self
    }

    /// Records the response's usage even if its holder dies mid-response: the response's
    /// reservation is taken with
    /// [`ChannelStore::reserve_recording`](crate::store::ChannelStore::reserve_recording)
    /// and `head`, so the store step that reclaims the lapsed reservation appends a record
    /// with the debit it makes. Pair it with [`record_usage`](Self::record_usage), which
    /// records a release; exactly one of the two records each response.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tollgate::method::{Grant, Renewal};
    /// use tollgate::store::ChannelId;
    /// use tollgate::wire::mpp::Receipt;
    ///
    /// let grant = Grant::new(ChannelId::new("payer"), Renewal::Never, Receipt::new("demo", "payer"))
    ///     .record_usage(|cost, units| Bytes::from(format!(r#"{{"path":"/x","units":{units},"cost":"{cost}"}}"#)))
    ///     .record_reclaimed(Bytes::from_static(br#"{"path":"/x""#));
    /// # let _ = grant;
    /// ```
    pub fn record_reclaimed(mut self, head: bytes::Bytes) -> Self {
        self.usage_head = Some(head);
        self
    }

    /// What [`record_reclaimed`](Self::record_reclaimed) set.
    pub fn reclaimed_record_head(&self) -> Option<&bytes::Bytes> {
        self.usage_head.as_ref()
    }

    /// Reserves `amount` whole when the response is admitted (a balance's request
    /// maximum: prompt plus `max_tokens`), instead of the upfront cost and one voucher
    /// window, and refuses the request (`InsufficientBalance`) when less is available: a
    /// metered response whose output is capped must have its maximum covered before its
    /// content goes out (the provider's usage may only come at the end).
    pub fn reserve_whole(mut self, amount: Amount) -> Self {
        self.reserve_whole = Some(amount);
        self
    }

    /// What [`reserve_whole`](Self::reserve_whole) set.
    pub fn whole_reservation(&self) -> Option<Amount> {
        self.reserve_whole
    }

    /// The channel the response draws on.
    pub fn channel(&self) -> &ChannelId {
        &self.channel
    }

    /// The payer, when the method named one.
    pub fn payer_id(&self) -> Option<&str> {
        self.payer.as_deref()
    }

    /// How the response gets more headroom.
    pub fn renewal(&self) -> Renewal {
        self.renewal
    }

    /// The receipt template.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// A settlement an SSE stream makes before its first content event goes out, for a
    /// payment whose amount does not depend on what is delivered (x402 `exact` with
    /// EIP-3009): the stream holds that event until `gate` is over. `Ok` lets the stream
    /// go on; `Err(proof)` ends it there, delivering nothing, with `proof` as its
    /// `payment-receipt` event. A stream that fails or ends before any content never runs
    /// it. Plain answers, held whole until they settle (see [`proven_by`](Self::proven_by)),
    /// never run it either: the [settled hook](Self::proven_by) settles them.
    ///
    /// Settling before the content means a payer cannot take the content and then empty its
    /// account, and a stream that outlives the authorization's validity is still paid.
    ///
    /// ```
    /// use serde_json::json;
    /// use tollgate::method::{Grant, Proof, Renewal};
    /// use tollgate::store::ChannelId;
    /// use tollgate::wire::mpp::Receipt;
    ///
    /// let grant = Grant::new(ChannelId::new("claim-1"), Renewal::Never, Receipt::new("demo", "claim-1"))
    ///     .before_content(|| async {
    ///         // Move the fixed amount to the payee here.
    ///         Ok::<(), Proof>(())
    ///     });
    /// # let _ = grant;
    /// ```
    pub fn before_content<F>(mut self, gate: impl FnOnce() -> F + Send + 'static) -> Self
    where
        F: Future<Output = Result<(), Proof>> + Send + 'static,
    {
        self.gate = Some(Box::new(move || Box::pin(gate())));
        self
    }

    /// The payment must be settled by `at` (a permit's deadline less the time its
    /// settlement takes): the response is over by then, whatever its client does.
    ///
    /// - A stream still running at `at` ends there cleanly, as when its budget runs out
    ///   (an SSE stream with the meter's ending and its receipt), and what it delivered
    ///   is released at once, so the [settled hook](Self::on_settled) runs in time.
    /// - A client that stops reading does not hold the payment past `at`: between polls the
    ///   response's account is held by a timer task that releases it at `at` on its own.
    /// - A plain answer held whole until it settles ([`proven_by`](Self::proven_by)) is not
    ///   cut: it is settled before any of it goes out, and a settlement that comes too late
    ///   fails and delivers nothing.
    ///
    /// A stream paid this way is never paused for a voucher: it ends when its headroom does.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tollgate::method::{Grant, Renewal};
    /// use tollgate::store::ChannelId;
    /// use tollgate::wire::mpp::Receipt;
    ///
    /// let deadline = SystemTime::now() + Duration::from_secs(300);
    /// let margin = Duration::from_secs(30);
    /// let grant = Grant::new(ChannelId::new("permit-1"), Renewal::Never, Receipt::new("demo", "permit-1"))
    ///     .on_settled(|settled| {
    ///         // Pull `settled.used` with the permit here, before its deadline.
    ///         let _ = settled;
    ///     })
    ///     .settle_by(deadline - margin);
    /// assert!(grant.settlement_deadline().is_some());
    /// ```
    pub fn settle_by(mut self, at: SystemTime) -> Self {
        self.settle_by = Some(at);
        self
    }

    /// What [`settle_by`](Self::settle_by) set.
    pub fn settlement_deadline(&self) -> Option<SystemTime> {
        self.settle_by
    }

    /// Hands the settlement deadline to the metering body that keeps it.
    pub(crate) fn take_settle_by(&mut self) -> Option<SystemTime> {
        self.settle_by.take()
    }

    /// The settlement to make before the first content of a stream, if any.
    pub(crate) fn take_gate(&mut self) -> Option<Gate> {
        self.gate.take()
    }

    /// Hands the settled hook to the account that runs it once released.
    pub(crate) fn take_settled_hook(&mut self) -> Option<SettledHook> {
        self.on_settled.take()
    }

    /// Hands the usage record hook to the account that releases with it.
    pub(crate) fn take_usage_hook(&mut self) -> Option<UsageHook> {
        self.usage_record.take()
    }

    /// The proof a late settlement is reported as; `Some` iff the grant proves its payment.
    pub(crate) fn take_pending_proof(&mut self) -> Option<Proof> {
        self.pending_proof.take().map(|proof| *proof)
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("channel", &self.channel)
            .field("payer", &self.payer)
            .field("renewal", &self.renewal)
            .field("receipt", &self.receipt)
            .field("on_settled", &self.on_settled.as_ref().map(|_| "<fn>"))
            .field("usage_record", &self.usage_record.as_ref().map(|_| "<fn>"))
            .field("usage_head", &self.usage_head)
            .field("reserve_whole", &self.reserve_whole)
            .field("pending_proof", &self.pending_proof)
            .field("gate", &self.gate.as_ref().map(|_| "<fn>"))
            .field("settle_by", &self.settle_by)
            .finish()
    }
}
