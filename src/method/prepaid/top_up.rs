//! x402 top-ups: an x402 `exact` payment that funds a balance instead of buying a request.

use crate::method::x402::{Settlement, SettlementOutcome};
use crate::store::ChannelStore;

use super::Prepaid;

/// A settlement observer for [`X402Exact::on_settlement`](crate::method::x402::X402Exact::on_settlement)
/// that credits each settled x402 payment to its payer's balance: put an `X402Exact` whose
/// offer pays the treasury in the token of [`Deposits`](super::Deposits) in front of a
/// top-up route (`POST /v1/top-up`, priced per request at the top-up amount), and a client
/// with only an x402 wallet (`@x402/fetch`) funds a balance.
///
/// The credit's reference is the settlement transaction's, `deposit:<hash>`: the same one
/// [`Deposits::claim`](super::Deposits::claim) uses, so a top-up is credited once whichever
/// path sees it first, and a credit lost to a crash between the settlement and the store
/// (or a store failure) is claimed later by posting the hash to `POST /v1/deposits`. A
/// payment settled by a transaction the settler did not see has no hash here: it is
/// credited through `POST /v1/deposits` only.
///
/// ```no_run
/// # #[cfg(feature = "x402")]
/// # fn run(offer: tollgate::method::x402::EvmOffer, chain: tollgate::method::tempo::RpcChain) {
/// use tollgate::method::prepaid::credit_top_ups;
/// use tollgate::method::x402::{OnChainSettler, X402Exact};
/// use tollgate::store::MemoryStore;
///
/// let store = MemoryStore::new();
/// let settler = OnChainSettler::new(chain.clone(), store.clone());
/// let top_up = X402Exact::new(offer, chain, settler).on_settlement(credit_top_ups(store.clone()));
/// # let _ = top_up; }
/// ```
pub fn credit_top_ups<St: ChannelStore + Clone>(store: St) -> impl Fn(SettlementOutcome) + Send + Sync + 'static {
    move |outcome| {
        let Some(Ok(Settlement { payer, amount, transaction: Some(tx), .. })) = outcome else { return };
        if amount.is_zero() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let store = store.clone();
        runtime.spawn(async move {
            let reference = format!("deposit:{tx:#x}");
            if let Err(error) = store.credit(&Prepaid::account(payer), amount, &reference).await {
                // Not lost: the payer (or anyone) can claim the hash at `POST /v1/deposits`.
                eprintln!("prepaid: top-up {tx:#x} settled but not credited yet: {error}");
            }
        });
    }
}
