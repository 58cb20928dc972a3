//! `[prepaid]`: prepaid balances beside the other methods. A payer deposits
//! `[payment] currency` to the treasury on chain (`POST /v1/deposits`), signs in with the
//! wallet (`POST /v1/sign-in`, sign-in-with-x) and uses the session token as the OpenAI
//! SDK's `apiKey`; each completion is debited from the balance, with its cost in the
//! response (`usage.cost`, `x-cost`) and in `GET /v1/usage`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tollgate::Secret;
use tollgate::method::prepaid::{Deposits, Prepaid, PrepaidApi, Siwx};

use super::chat::ChatRequest;
use super::config::PrepaidConfig;
use super::payment::PaymentSettings;
use super::store::ProxyStore;

/// The prepaid method of `config`, its nonces and tokens bound with the challenge secret.
pub fn method(config: &PrepaidConfig, settings: &PaymentSettings) -> Result<Arc<Prepaid>, String> {
    if config.chain_ids.is_empty() {
        return Err("[prepaid] chain_ids: name at least one chain".into());
    }
    let secret = Secret::new(&settings.secret);
    let siwx = Siwx::new(&secret, config.domain.clone(), config.uri.clone(), config.chain_ids.iter().copied());
    let method = Prepaid::new(siwx)
        .session_ttl(Duration::from_secs(config.session_secs))
        // `parse_chat` put the checked request in the extensions before the layer runs.
        .model_with(|head| head.extensions.get::<Arc<ChatRequest>>().map(|chat| chat.model.clone()));
    Ok(Arc::new(method))
}

/// `POST /v1/deposits`, `POST /v1/sign-in`, `GET /v1/balance` and `GET /v1/usage`.
pub fn routes(
    config: &PrepaidConfig,
    settings: &PaymentSettings,
    method: Arc<Prepaid>,
    store: ProxyStore,
) -> Result<Router, String> {
    let treasury = match &config.treasury {
        Some(text) => text.parse().map_err(|e| format!("[prepaid] treasury {text}: {e}"))?,
        None => settings.payee.address(),
    };
    let deposits = Deposits::new(&settings.rpc_url, settings.currency, treasury)
        .map_err(|e| e.to_string())?
        .confirmations(config.confirmations);
    let api = PrepaidApi::new((*method).clone(), store).deposits(deposits);
    Ok(Router::new()
        .route_service("/v1/deposits", api.clone())
        .route_service("/v1/sign-in", api.clone())
        .route_service("/v1/balance", api.clone())
        .route_service("/v1/usage", api))
}
