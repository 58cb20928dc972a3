//! A paying client over HTTP: tollgate's `SessionClient` (it signs) plus a hyper client (it
//! sends) and an SSE reader that answers `payment-need-voucher` events as they come.

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tollgate::client::{SessionClient, TxParams};
use tollgate::wire::mpp::{Challenge, PAYMENT_RECEIPT, Receipt};

/// The paid route.
pub const CHAT: &str = "/v1/chat/completions";

/// Something the stream did, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A chat-completion chunk.
    Chunk(Value),
    /// The stream paused: the server needs a voucher for `required`.
    NeedVoucher {
        /// The cumulative amount asked for.
        required: u128,
        /// What the server had accepted.
        accepted: u128,
    },
    /// The client paid a voucher raising the channel to `cumulative`; the stream resumes.
    Paid {
        /// The voucher's cumulative amount.
        cumulative: u128,
    },
    /// An `{"error": ...}` frame.
    Error(Value),
    /// `data: [DONE]`.
    Done,
    /// The `payment-receipt` event.
    Receipt(Value),
}

/// Whether to keep reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Drop the connection now.
    Disconnect,
}

/// What a streamed request gave.
#[derive(Clone, Debug, Default)]
pub struct Streamed {
    /// The status.
    pub status: StatusCode,
    /// Choice 0's text.
    pub text: String,
    /// The last `usage` seen.
    pub usage: Option<Value>,
    /// The `payment-receipt` event's data.
    pub receipt: Option<Value>,
    /// Vouchers paid while streaming.
    pub vouchers: usize,
    /// A mid-stream error frame.
    pub error: Option<Value>,
    /// A non-200 answer's JSON body.
    pub body: Option<Value>,
    /// The answer's headers.
    pub headers: http::HeaderMap,
}

/// One payer, one channel, over HTTP.
#[derive(Debug)]
pub struct PayingClient {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
    signer: PrivateKeySigner,
    challenge: Option<Challenge>,
    session: Option<SessionClient>,
}

impl PayingClient {
    /// A client of the proxy at `base` (`http://127.0.0.1:port`) paying from `signer`.
    pub fn new(base: impl Into<String>, signer: PrivateKeySigner) -> Self {
        let http = Client::builder(TokioExecutor::new()).build_http();
        PayingClient { http, base: base.into(), signer, challenge: None, session: None }
    }

    /// Sends its requests to the proxy at `base` from now on (another instance on the same
    /// store: the channel goes on there).
    pub fn set_base(&mut self, base: impl Into<String>) {
        self.base = base.into();
    }

    /// The challenge in use.
    pub fn challenge(&self) -> Option<&Challenge> {
        self.challenge.as_ref()
    }

    /// The payer's address.
    pub fn address(&self) -> alloy::primitives::Address {
        self.signer.address()
    }

    /// The open channel.
    pub fn channel(&self) -> Option<B256> {
        self.session.as_ref().and_then(SessionClient::channel_id)
    }

    /// The highest voucher signed.
    pub fn cumulative(&self) -> u128 {
        self.session.as_ref().map_or(0, SessionClient::cumulative)
    }

    /// `GET path` as JSON.
    pub async fn get_json(&self, path: &str) -> Result<(StatusCode, Value), String> {
        let request = Request::get(format!("{}{path}", self.base)).body(Full::default()).map_err(|e| e.to_string())?;
        let response = self.http.request(request).await.map_err(|e| e.to_string())?;
        let (status, body) = collect(response).await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// `POST /v1/chat/completions` with `body` (none: a management request) and `auth`.
    pub async fn post(&self, body: Option<&Value>, auth: Option<HeaderValue>) -> Result<Response<Incoming>, String> {
        let mut request = Request::post(format!("{}{CHAT}", self.base));
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let request = match body {
            Some(body) => request.header(header::CONTENT_TYPE, "application/json").body(Full::from(body.to_string())),
            None => request.body(Full::default()),
        };
        self.http.request(request.map_err(|e| e.to_string())?).await.map_err(|e| e.to_string())
    }

    /// Sends `body` unpaid; on a 402 keeps its challenge. Returns the status, headers and body.
    pub async fn ask(&mut self, body: &Value) -> Result<(StatusCode, http::HeaderMap, Value), String> {
        let response = self.post(Some(body), None).await?;
        let headers = response.headers().clone();
        if response.status() == StatusCode::PAYMENT_REQUIRED {
            let challenges =
                Challenge::parse_all(headers.get_all(header::WWW_AUTHENTICATE)).map_err(|e| e.to_string())?;
            // tollgate's `SessionClient` pays v1 channels: take the v1 challenge.
            self.challenge = challenges.into_iter().find(|c| {
                let protocol = c.decode_request().ok().map(|r| r["methodDetails"]["sessionProtocol"].clone());
                c.method == "tempo" && c.intent == "session" && protocol.as_ref().and_then(|p| p.as_str()) != Some("v2")
            });
        }
        let (status, bytes) = collect(response).await?;
        Ok((status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Opens a channel with `deposit` on a bodiless POST; returns the receipt.
    pub async fn open(&mut self, deposit: u128, salt: B256, tx: TxParams) -> Result<Receipt, String> {
        let challenge = self.challenge.clone().ok_or("no challenge yet: ask first")?;
        let mut session = SessionClient::new(self.signer.clone(), &challenge).map_err(|e| e.to_string())?;
        let auth = session.open(&challenge, deposit, salt, tx).map_err(|e| e.to_string())?;
        self.session = Some(session);
        self.manage(auth).await
    }

    /// Pays a voucher raising the channel to `cumulative`.
    pub async fn voucher(&mut self, cumulative: u128) -> Result<Receipt, String> {
        let (session, challenge) = self.paying()?;
        let auth = session.voucher(&challenge, cumulative).map_err(|e| e.to_string())?;
        self.manage(auth).await
    }

    /// Closes the channel with a final voucher for `cumulative` (what the receipt says was
    /// spent, so the payee captures exactly that).
    pub async fn close(&mut self, cumulative: u128) -> Result<Receipt, String> {
        let (session, challenge) = self.paying()?;
        let auth = session.close(&challenge, cumulative).map_err(|e| e.to_string())?;
        self.manage(auth).await
    }

    /// Streams a completion of `body`, paying each `payment-need-voucher` as it comes; `on`
    /// sees every event and may hang up.
    pub async fn stream(&mut self, body: &Value, mut on: impl FnMut(&Event) -> Flow) -> Result<Streamed, String> {
        let (session, challenge) = self.paying()?;
        let auth = session.voucher(&challenge, session.cumulative()).map_err(|e| e.to_string())?;
        // A client that wants the stream asks for it (without `stream: true` the proxy
        // answers one `chat.completion` object).
        let mut body = body.clone();
        if let Some(object) = body.as_object_mut() {
            object.insert("stream".into(), Value::Bool(true));
        }
        let response = self.post(Some(&body), Some(auth)).await?;
        let mut out =
            Streamed { status: response.status(), headers: response.headers().clone(), ..Streamed::default() };
        if response.status() != StatusCode::OK {
            let (_, bytes) = collect(response).await?;
            out.body = serde_json::from_slice(&bytes).ok();
            return Ok(out);
        }
        let mut body = response.into_body();
        let mut buffer = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() else { continue };
            buffer.extend_from_slice(&data);
            while let Some((name, data)) = next_event(&mut buffer) {
                let event = match name.as_deref() {
                    Some("payment-need-voucher") => {
                        let need: Value = serde_json::from_str(&data).map_err(|e| e.to_string())?;
                        let amount = |key: &str| need[key].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
                        let event = Event::NeedVoucher {
                            required: amount("requiredCumulative"),
                            accepted: amount("acceptedCumulative"),
                        };
                        if on(&event) == Flow::Disconnect {
                            return Ok(out);
                        }
                        let (session, challenge) = self.paying()?;
                        let auth = session.answer_need_voucher(&challenge, &data).map_err(|e| e.to_string())?;
                        let cumulative = session.cumulative();
                        self.manage(auth).await?;
                        out.vouchers += 1;
                        Event::Paid { cumulative }
                    }
                    Some("payment-receipt") => {
                        let receipt: Value = serde_json::from_str(&data).map_err(|e| e.to_string())?;
                        out.receipt = Some(receipt.clone());
                        Event::Receipt(receipt)
                    }
                    _ if data == "[DONE]" => Event::Done,
                    _ => {
                        let chunk: Value = serde_json::from_str(&data).map_err(|e| format!("bad chunk {data}: {e}"))?;
                        if chunk.get("error").is_some() {
                            out.error = Some(chunk.clone());
                            Event::Error(chunk)
                        } else {
                            if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
                                out.text.push_str(text);
                            }
                            if !chunk["usage"].is_null() {
                                out.usage = Some(chunk["usage"].clone());
                            }
                            Event::Chunk(chunk)
                        }
                    }
                };
                if on(&event) == Flow::Disconnect {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    fn paying(&mut self) -> Result<(&mut SessionClient, Challenge), String> {
        let challenge = self.challenge.clone().ok_or("no challenge yet")?;
        let session = self.session.as_mut().ok_or("no channel open")?;
        Ok((session, challenge))
    }

    /// Sends a management credential on a bodiless POST; expects 204 and a receipt.
    async fn manage(&self, auth: HeaderValue) -> Result<Receipt, String> {
        let response = self.post(None, Some(auth)).await?;
        let receipt = response.headers().get(PAYMENT_RECEIPT).map(Receipt::from_header_value);
        let (status, body) = collect(response).await?;
        match (status, receipt) {
            (StatusCode::NO_CONTENT, Some(Ok(receipt))) => Ok(receipt),
            _ => Err(format!("management request answered {status}: {}", String::from_utf8_lossy(&body))),
        }
    }
}

async fn collect(response: Response<Incoming>) -> Result<(StatusCode, Bytes), String> {
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

/// Takes the next complete SSE event out of `buffer`: its `event:` name and joined `data:`.
/// Comments (keep-alives) and events without data are skipped.
fn next_event(buffer: &mut Vec<u8>) -> Option<(Option<String>, String)> {
    loop {
        let end = buffer.windows(2).position(|w| w == b"\n\n")?;
        let block: Vec<u8> = buffer.drain(..end + 2).collect();
        let text = String::from_utf8_lossy(&block).replace('\r', "");
        let (mut name, mut data) = (None, Vec::new());
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                name = Some(value.trim().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
            }
        }
        if !data.is_empty() {
            return Some((name, data.join("\n")));
        }
    }
}
