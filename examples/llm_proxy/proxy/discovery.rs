//! The discovery documents agents and `mppx validate` read, generated from the catalog and
//! served free (outside the payment layer):
//!
//! - `GET /openapi.json`: OpenAPI 3.1 with MPP's `x-service-info` at the root and, on the
//!   paid `POST /v1/chat/completions`, `x-payment-info` (one offer per model: the
//!   challenge's per-token `amount`, the token, and the per-million prices), a `402`
//!   response and a request body whose `example` the proxy accepts;
//! - `GET /llms.txt` (and `GET /`): the same in plain text, for agents.
//!
//! Both are built once, when the router is: the catalog does not change while serving.

use alloy::primitives::Address;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderValue, header};
use serde_json::{Value, json};

use super::catalog::{Catalog, Model};
use super::payment::{describe, dollars};

/// `GET /openapi.json`, `GET /llms.txt` and `GET /` for `catalog`.
pub fn routes<S: Clone + Send + Sync + 'static>(catalog: &Catalog) -> Router<S> {
    // Rendered once; `Bytes` clones share the buffer.
    let openapi = Bytes::from(openapi(catalog).to_string());
    let llms = Bytes::from(llms(catalog));
    let home = llms.clone();
    Router::new()
        .route("/openapi.json", get(move || async move { body("application/json", openapi) }))
        .route("/llms.txt", get(move || async move { body("text/plain; charset=utf-8", llms) }))
        .route("/", get(move || async move { body("text/plain; charset=utf-8", home) }))
}

fn body(content_type: &'static str, bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], bytes).into_response()
}

/// The token address as challenges show it (checksummed), or as configured if it is not one.
fn currency(catalog: &Catalog) -> String {
    catalog.currency().parse::<Address>().map_or_else(|_| catalog.currency().to_owned(), |a| a.to_checksum(None))
}

/// One `x-payment-info` offer: what the 402 of a request for `model` carries.
fn offer(catalog: &Catalog, model: &Model) -> Value {
    json!({
        "method": "tempo",
        "intent": "session",
        "amount": model.price.output.unit_price().to_string(),
        "currency": currency(catalog),
        "description": format!("{}: {} (per token, over a Tempo payment channel)", model.id, describe(&model.price, catalog.decimals())),
    })
}

/// The OpenAPI 3.1 document.
pub fn openapi(catalog: &Catalog) -> Value {
    let ids: Vec<&str> = catalog.models().iter().map(|m| m.id.as_str()).collect();
    let first = ids.first().copied().unwrap_or("model");
    let offers: Vec<Value> = catalog.models().iter().map(|m| offer(catalog, m)).collect();
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let error_response = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": error } } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tollgate LLM proxy",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "An OpenAI-compatible chat-completions API paid per token over Tempo payment channels \
                (MPP `tempo` / `session`): no account, no API key; an MPP client pays.",
        },
        "x-service-info": {
            "categories": ["ai", "llm"],
            "docs": { "apiReference": "/openapi.json", "homepage": "/", "llms": "/llms.txt" },
        },
        "paths": {
            "/v1/chat/completions": { "post": {
                "operationId": "createChatCompletion",
                "summary": "Chat completion, paid per token (prompt and completion)",
                "description": "Unpaid requests get 402 with `WWW-Authenticate: Payment` challenges (MPP `tempo` / \
                    `session`). The answer streams; the payment layer meters every token and asks for vouchers in \
                    band (`payment-need-voucher` events), and ends with a `payment-receipt` event.",
                "x-payment-info": { "offers": offers },
                "requestBody": {
                    "required": true,
                    "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/ChatCompletionRequest" },
                        "example": {
                            "model": first,
                            "messages": [{ "role": "user", "content": "Say hello." }],
                            "max_tokens": 16,
                        },
                    } },
                },
                "responses": {
                    "200": {
                        "description": "The completion, as OpenAI's chat.completion.chunk events with the final usage.",
                        "content": { "text/event-stream": { "schema": { "type": "string" } } },
                    },
                    "400": error_response("The request is not a valid chat completion request."),
                    "402": {
                        "description": "Payment required: the challenges are in `WWW-Authenticate: Payment` (MPP).",
                        "headers": { "WWW-Authenticate": { "schema": { "type": "string" } } },
                        "content": { "application/json": { "schema": error } },
                    },
                    "404": error_response("No such model."),
                    "413": error_response("The request body is too large."),
                    "429": error_response("Every provider rate-limited the request."),
                    "502": error_response("No provider answered."),
                },
            } },
            "/v1/models": { "get": {
                "operationId": "listModels",
                "summary": "The models sold and their prices per 1M tokens (free)",
                "responses": { "200": { "description": "An OpenAI model list with `pricing` on each model." } },
            } },
            "/health": { "get": {
                "operationId": "health",
                "summary": "Liveness (free)",
                "responses": { "200": { "description": "`{\"status\":\"ok\"}`" } },
            } },
        },
        "components": { "schemas": {
            "ChatCompletionRequest": {
                "type": "object",
                "required": ["model", "messages"],
                "properties": {
                    "model": { "type": "string", "enum": ids, "example": first },
                    "messages": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["role"],
                            "properties": {
                                "role": { "type": "string", "enum": ["system", "developer", "user", "assistant", "tool"] },
                                "content": { "type": ["string", "array", "null"] },
                            },
                        },
                    },
                    "max_tokens": { "type": "integer", "minimum": 1 },
                    "temperature": { "type": "number", "minimum": 0, "maximum": 2 },
                    "top_p": { "type": "number", "minimum": 0, "maximum": 1 },
                    "stream": { "type": "boolean" },
                },
            },
            "Error": {
                "type": "object",
                "properties": { "error": { "type": "object", "properties": {
                    "message": { "type": "string" },
                    "type": { "type": "string" },
                    "code": { "type": ["string", "null"] },
                } } },
            },
        } },
    })
}

/// The `llms.txt` text.
pub fn llms(catalog: &Catalog) -> String {
    let mut text = String::from(
        "# tollgate LLM proxy\n\n\
         > An OpenAI-compatible chat-completions API paid per token over Tempo payment channels (MPP `tempo` / \
         `session`). No account and no API key: an MPP client (mppx) opens a channel and pays with vouchers.\n\n\
         ## Endpoints\n\n\
         - `POST /v1/chat/completions`: paid. Without a credential it answers 402 with `WWW-Authenticate: Payment` \
         challenges. The answer streams; vouchers are asked for in band (`payment-need-voucher` events) and a \
         `payment-receipt` event ends it. Errors are OpenAI's `{\"error\": {...}}`.\n\
         - `GET /v1/models`: free; the models and their prices.\n\
         - `GET /openapi.json`: free; this API as OpenAPI 3.1 with `x-payment-info`.\n\
         - `GET /health`: free.\n\n\
         ## Models and prices (service fee included)\n\n",
    );
    for model in catalog.models() {
        let price = describe(&model.price, catalog.decimals());
        let unit = model.price.output.unit_price().get();
        let unit = dollars(catalog.dollars(unit));
        text.push_str(&format!("- `{}`: {price}; challenge amount ${unit} per output token\n", model.id));
    }
    text.push_str(&format!(
        "\nPaid in the TIP-20 token {} ({} decimals).\n\n\
         ## Paying from JavaScript\n\n\
         ```js\n\
         import OpenAI from 'openai'\n\
         import {{ Mppx, tempo }} from 'mppx/client'\n\
         import {{ privateKeyToAccount }} from 'viem/accounts'\n\n\
         const account = privateKeyToAccount(process.env.PRIVATE_KEY)\n\
         Mppx.create({{ methods: [tempo({{ account, maxDeposit: '1' }})] }}) // pays through the global fetch\n\
         const openai = new OpenAI({{ baseURL: '<this server>/v1', apiKey: 'unused', fetch }})\n\
         ```\n",
        currency(catalog),
        catalog.decimals()
    ));
    text
}
