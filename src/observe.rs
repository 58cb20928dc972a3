//! What the layer tells a seller's dashboards: a `tracing` span per paid request with events
//! at the money moments (feature `tracing`), and `metrics` counters and histograms (feature
//! `metrics`). The series are listed in the README (Observability).
//!
//! The core calls these in one line each. Without either feature [`Observed`] is empty and
//! every call is an empty inline function: the default build carries none of it. Nothing
//! here runs per token or per event, only at admission, pause, resume and release.

#[cfg(feature = "metrics")]
use std::time::Instant;

use crate::amount::Amount;
use crate::context::PaymentContext;
use crate::error::PaymentErrorKind;
use crate::method::ProofStatus;

/// One paid request, watched from admission to its release: its span (`tracing`) and the
/// labels of its series (`metrics`). Cloned into the account so the release reports too.
#[derive(Clone, Default)]
pub(crate) struct Observed {
    #[cfg(feature = "tracing")]
    span: Option<tracing::Span>,
    /// Set by a cutoff or a refused settlement: wins over what the release says.
    #[cfg(feature = "tracing")]
    outcome: Option<&'static str>,
    /// Shared, so each series' label is a reference count, not a copy.
    #[cfg(feature = "metrics")]
    method: metrics::SharedString,
    #[cfg(feature = "metrics")]
    paused_at: Option<Instant>,
    #[cfg(feature = "metrics")]
    pauses: u64,
    #[cfg(feature = "metrics")]
    vouchers: u64,
}

/// When a settlement was submitted (empty without `metrics`).
pub(crate) struct Since {
    #[cfg(feature = "metrics")]
    at: Instant,
}

/// A price on a span: `in=<amount>/<per> out=<amount>/<per> unit=<unit>`, base units.
#[cfg(feature = "tracing")]
struct Shown<'a>(&'a crate::amount::Price);

#[cfg(feature = "tracing")]
impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (input, output) = (self.0.input, self.0.output);
        write!(f, "in={}/{} out={}/{} unit={}", input.amount(), input.per(), output.amount(), output.per(), self.0.unit)
    }
}

/// An amount as a counter's `u64` (a counter cannot take more; it saturates).
#[cfg(feature = "metrics")]
fn base_units(amount: Amount) -> u64 {
    u64::try_from(amount.get()).unwrap_or(u64::MAX)
}

impl Observed {
    /// A payment verified for `context`: opens its span and counts the credential.
    #[inline]
    // Without either feature there are no fields to update.
    #[allow(unused_variables, clippy::needless_update)]
    pub(crate) fn admitted(context: &PaymentContext) -> Self {
        #[cfg(feature = "metrics")]
        let method = metrics::SharedString::from(std::sync::Arc::<str>::from(context.method.as_str()));
        #[cfg(feature = "metrics")]
        metrics::counter!("tollgate_credentials_accepted_total", "method" => method.clone()).increment(1);
        Observed {
            #[cfg(feature = "tracing")]
            span: Some(tracing::info_span!(
                "tollgate.payment",
                method = %context.method,
                intent = %context.intent,
                channel = %context.channel,
                payer = context.payer.as_deref().unwrap_or(""),
                price = %Shown(&context.quote.price),
                outcome = tracing::field::Empty,
            )),
            #[cfg(feature = "metrics")]
            method,
            ..Observed::default()
        }
    }

    /// The upfront is reserved (`least` up to `most`): the request is paid and goes on.
    #[inline]
    #[allow(unused_variables)]
    pub(crate) fn reserved(&self, context: &PaymentContext, least: Amount, most: Amount) {
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            tracing::info!(parent: span, least = %least, most = %most, "reserve");
        }
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "tollgate_paid_requests_total",
            "method" => self.method.clone(),
            "intent" => context.intent.clone()
        )
        .increment(1);
    }

    /// The stream ran short and pauses for a voucher asking for `required` (cumulative).
    #[inline]
    #[allow(unused_variables)]
    pub(crate) fn paused(&mut self, required: Amount) {
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            tracing::info!(parent: span, required = %required, "pause for voucher");
        }
        #[cfg(feature = "metrics")]
        {
            self.pauses = self.pauses.saturating_add(1);
            if self.pauses == 1 {
                // Counted once per stream, however often it pauses.
                metrics::counter!("tollgate_streams_paused_total", "method" => self.method.clone()).increment(1);
            }
            self.paused_at.get_or_insert_with(Instant::now);
        }
    }

    /// The channel moved while paused (`voucher`: its accepted amount grew): the stream
    /// resumes.
    #[inline]
    #[allow(unused_variables)]
    pub(crate) fn resumed(&mut self, voucher: bool) {
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            if voucher {
                tracing::info!(parent: span, "voucher accepted");
            }
            tracing::info!(parent: span, "resume");
        }
        #[cfg(feature = "metrics")]
        {
            self.vouchers = self.vouchers.saturating_add(u64::from(voucher));
            self.pause_over();
        }
    }

    #[cfg(feature = "metrics")]
    fn pause_over(&mut self) {
        if let Some(since) = self.paused_at.take() {
            metrics::histogram!("tollgate_pause_seconds", "method" => self.method.clone())
                .record(since.elapsed().as_secs_f64());
        }
    }

    /// The budget ended the stream.
    #[inline]
    pub(crate) fn cut_off(&mut self) {
        self.mark("cutoff");
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            tracing::info!(parent: span, "cutoff");
        }
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("tollgate_cutoffs_total", "method" => self.method.clone()).increment(1);
            self.pause_over();
        }
    }

    /// The outcome the span ends with, whatever the release says later.
    #[inline]
    #[allow(unused_variables)]
    pub(crate) fn mark(&mut self, outcome: &'static str) {
        #[cfg(feature = "tracing")]
        self.outcome.get_or_insert(outcome);
    }

    /// The response is over (`outcome`: `delivered`, `cutoff`, `failed`, `refused`):
    /// records it on the span and the stream's voucher count.
    #[inline]
    #[allow(unused_variables)]
    pub(crate) fn ended(&mut self, outcome: &'static str) {
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            span.record("outcome", self.outcome.unwrap_or(outcome));
        }
        #[cfg(feature = "metrics")]
        {
            self.pause_over();
            metrics::histogram!("tollgate_vouchers_per_stream", "method" => self.method.clone())
                .record(self.vouchers as f64);
        }
    }

    /// The release committed `used` over `units` (what the response delivered).
    #[inline]
    #[allow(unused_variables)]
    pub(crate) fn released(&self, used: Amount, units: u64) {
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            tracing::info!(parent: span, used = %used, units, "release");
        }
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("tollgate_units_charged_total", "method" => self.method.clone()).increment(units);
            metrics::counter!("tollgate_base_units_charged_total", "method" => self.method.clone())
                .increment(base_units(used));
        }
    }

    /// The payment's settlement was submitted (a grant that proves its payment).
    #[inline]
    pub(crate) fn settlement_submitted(&self) -> Since {
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            tracing::info!(parent: span, "settlement submitted");
        }
        Since {
            #[cfg(feature = "metrics")]
            at: Instant::now(),
        }
    }

    /// The settlement submitted `since` answered with `status`.
    #[inline]
    #[allow(unused_variables)]
    pub(crate) fn settlement_done(&self, since: Since, status: ProofStatus) {
        let status = match status {
            ProofStatus::Settled => "settled",
            ProofStatus::Pending => "pending",
            ProofStatus::Failed => "failed",
        };
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            tracing::info!(parent: span, status, "settlement confirmed");
        }
        #[cfg(feature = "metrics")]
        {
            metrics::histogram!("tollgate_settlement_lag_seconds", "method" => self.method.clone())
                .record(since.at.elapsed().as_secs_f64());
            if status == "failed" {
                chain_error("settle");
            }
        }
    }
}

/// A `402` went out with fresh offers (`kind`: why).
#[inline]
#[allow(unused_variables)]
pub(crate) fn challenged(kind: PaymentErrorKind) {
    #[cfg(feature = "tracing")]
    tracing::info!(problem = kind.problem_type(), "challenge issued");
    #[cfg(feature = "metrics")]
    metrics::counter!("tollgate_challenges_total").increment(1);
}

/// The layer refused a request for `kind` (any refusal but a plain "payment required").
#[inline]
#[allow(unused_variables)]
pub(crate) fn refused(kind: PaymentErrorKind) {
    // A plain "payment required" is the challenge itself, counted as one.
    if kind != PaymentErrorKind::PaymentRequired {
        #[cfg(feature = "tracing")]
        tracing::info!(problem = kind.problem_type(), "credential refused");
        #[cfg(feature = "metrics")]
        metrics::counter!("tollgate_credentials_refused_total", "problem" => kind.problem_type()).increment(1);
    }
}

/// The payment store failed at `op` (`reserve`, `grow`, `release`).
#[inline]
#[allow(unused_variables)]
pub(crate) fn store_error(op: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(op, "payment store error");
    #[cfg(feature = "metrics")]
    metrics::counter!("tollgate_store_errors_total", "op" => op).increment(1);
}

/// A chain was unreachable for `op` (`tempo_session`, `tempo_charge`): nothing is known of
/// what it did, and the request got a `503`.
#[cfg(feature = "tempo")]
#[inline]
#[allow(unused_variables)]
pub(crate) fn chain_unavailable(op: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::warn!(op, "chain unavailable");
    #[cfg(feature = "metrics")]
    chain_error(op);
}

/// A channel's on-chain settlement (a close's or the payee's capture) was submitted; outside
/// any paid request's span (a close is a management request).
#[cfg(feature = "tempo")]
#[inline]
#[allow(unused_variables)]
pub(crate) fn channel_settlement_submitted(method: &'static str) -> Since {
    #[cfg(feature = "tracing")]
    tracing::info!(method, "settlement submitted");
    Since {
        #[cfg(feature = "metrics")]
        at: Instant::now(),
    }
}

/// The channel settlement submitted `since` ended: `settled` or `failed`.
#[cfg(feature = "tempo")]
#[inline]
#[allow(unused_variables)]
pub(crate) fn channel_settlement_done(method: &'static str, since: Since, settled: bool) {
    let status = if settled { "settled" } else { "failed" };
    #[cfg(feature = "tracing")]
    tracing::info!(method, status, "settlement confirmed");
    #[cfg(feature = "metrics")]
    {
        metrics::histogram!("tollgate_settlement_lag_seconds", "method" => method)
            .record(since.at.elapsed().as_secs_f64());
        if !settled {
            chain_error("settle");
        }
    }
}

/// A chain call failed at `op` (`settle`, or a method's chain reads and sends).
#[cfg(feature = "metrics")]
fn chain_error(op: &'static str) {
    metrics::counter!("tollgate_chain_errors_total", "op" => op).increment(1);
}
