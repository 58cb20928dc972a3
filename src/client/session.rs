//! [`SessionClient`]: one payer, one channel.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use http::HeaderValue;
use serde_json::{Value, json};

use super::ClientError;
use crate::method::tempo::escrow::{IStreamChannelEscrow, ITip20};
use crate::method::tempo::tx::TempoTxBuilder;
use crate::method::tempo::{ChannelDescriptor, SessionProtocol, VoucherDomain};
use crate::wire::mpp::{Challenge, Credential};

/// Nonce and fees for a transaction the client signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxParams {
    /// The account's protocol nonce.
    pub nonce: u64,
    /// The fee cap per gas.
    pub max_fee_per_gas: u128,
    /// The gas limit (be generous: local chains do not estimate Tempo calls).
    pub gas_limit: u64,
}

/// What the challenge offers.
#[derive(Clone, Debug)]
struct Offer {
    chain_id: u64,
    escrow: Address,
    currency: Address,
    payee: Address,
    unit_price: u128,
}

/// Pays one Tempo v1 session channel. See the [module docs](super).
///
/// # Spend caps
///
/// A server asks for vouchers (`requiredCumulative` in a need-voucher event); the client
/// signs no voucher (including the close) above:
///
/// - the channel's deposit, once known ([`open`](Self::open), [`top_up`](Self::top_up),
///   [`with_deposit`](Self::with_deposit));
/// - [`max_spend`](Self::max_spend), a total for the channel;
/// - [`max_step`](Self::max_step) above the last signed voucher, so a single request
///   cannot take more than that.
///
/// Anything above is refused with [`ClientError::OverSpendCap`] and nothing is signed.
#[derive(Debug)]
pub struct SessionClient {
    signer: PrivateKeySigner,
    offer: Offer,
    domain: VoucherDomain,
    channel: Option<B256>,
    cumulative: u128,
    deposit: Option<u128>,
    max_spend: Option<u128>,
    max_step: Option<u128>,
}

impl SessionClient {
    /// A client paying the session offered by `challenge` from `signer`'s account.
    pub fn new(signer: PrivateKeySigner, challenge: &Challenge) -> Result<Self, ClientError> {
        let offer = read_offer(challenge)?;
        let domain = VoucherDomain::new(SessionProtocol::V1, offer.chain_id, offer.escrow);
        Ok(SessionClient {
            signer,
            offer,
            domain,
            channel: None,
            cumulative: 0,
            deposit: None,
            max_spend: None,
            max_step: None,
        })
    }

    /// Signs no voucher for more than `cap` in total on this channel.
    pub fn max_spend(mut self, cap: u128) -> Self {
        self.max_spend = Some(cap);
        self
    }

    /// Signs no voucher more than `cap` above the last one.
    pub fn max_step(mut self, cap: u128) -> Self {
        self.max_step = Some(cap);
        self
    }

    /// The channel's deposit, for a client made by [`with_channel`](Self::with_channel):
    /// no voucher above it is signed.
    pub fn with_deposit(mut self, deposit: u128) -> Self {
        self.deposit = Some(deposit);
        self
    }

    /// The channel's deposit, when known.
    pub fn deposit(&self) -> Option<u128> {
        self.deposit
    }

    /// The highest cumulative amount the caps let this client sign now.
    pub fn allowed(&self) -> u128 {
        let step = self.max_step.map(|step| self.cumulative.saturating_add(step));
        [self.deposit, self.max_spend, step].into_iter().flatten().min().unwrap_or(u128::MAX)
    }

    /// Refuses `requested` above what the caps allow (an amount already signed is fine).
    fn check_cap(&self, requested: u128) -> Result<(), ClientError> {
        let allowed = self.allowed();
        if requested > self.cumulative && requested > allowed {
            return Err(ClientError::OverSpendCap { requested, allowed });
        }
        Ok(())
    }

    /// A client for a channel that is already open (after a restart), whose highest signed
    /// voucher was `cumulative`.
    pub fn with_channel(
        signer: PrivateKeySigner,
        challenge: &Challenge,
        channel: B256,
        cumulative: u128,
    ) -> Result<Self, ClientError> {
        let mut client = SessionClient::new(signer, challenge)?;
        client.channel = Some(channel);
        client.cumulative = cumulative;
        Ok(client)
    }

    /// The open channel, if any.
    pub fn channel_id(&self) -> Option<B256> {
        self.channel
    }

    /// The highest cumulative amount signed so far.
    pub fn cumulative(&self) -> u128 {
        self.cumulative
    }

    /// Opens a channel with `deposit` (salted by `salt`) and signs the first voucher for
    /// one unit.
    pub fn open(
        &mut self,
        challenge: &Challenge,
        deposit: u128,
        salt: B256,
        tx: TxParams,
    ) -> Result<HeaderValue, ClientError> {
        let first = self.offer.unit_price;
        let allowed = [Some(deposit), self.max_spend, self.max_step].into_iter().flatten().min().unwrap_or(u128::MAX);
        if first > allowed {
            return Err(ClientError::OverSpendCap { requested: first, allowed });
        }
        let o = &self.offer;
        let approve = ITip20::approveCall { spender: o.escrow, amount: U256::from(deposit) };
        let open = IStreamChannelEscrow::openCall {
            payee: o.payee,
            token: o.currency,
            deposit,
            salt,
            authorizedSigner: Address::ZERO,
        };
        let raw = self.transaction(tx, [(o.currency, approve.abi_encode()), (o.escrow, open.abi_encode())])?;
        let descriptor = ChannelDescriptor {
            payer: self.signer.address(),
            payee: o.payee,
            token: o.currency,
            salt,
            ..ChannelDescriptor::default()
        };
        let channel = descriptor.channel_id(SessionProtocol::V1, o.escrow, o.chain_id);
        let signature = self.sign(channel, first)?;
        self.channel = Some(channel);
        self.cumulative = first;
        self.deposit = Some(deposit);
        let payload = json!({
            "action": "open", "type": "transaction", "channelId": channel, "transaction": raw,
            "authorizedSigner": Address::ZERO, "cumulativeAmount": first.to_string(), "signature": signature,
        });
        Ok(self.credential(challenge, payload))
    }

    /// Signs a voucher raising the channel to `cumulative` (never lowering it), within the
    /// [spend caps](Self#spend-caps).
    pub fn voucher(&mut self, challenge: &Challenge, cumulative: u128) -> Result<HeaderValue, ClientError> {
        let channel = self.channel.ok_or(ClientError::NoChannel)?;
        self.check_cap(cumulative)?;
        self.cumulative = self.cumulative.max(cumulative);
        let signature = self.sign(channel, self.cumulative)?;
        let payload = json!({"action": "voucher", "channelId": channel, "cumulativeAmount": self.cumulative.to_string(), "signature": signature});
        Ok(self.credential(challenge, payload))
    }

    /// Answers a `payment-need-voucher` event's `data`, within the
    /// [spend caps](Self#spend-caps).
    pub fn answer_need_voucher(&mut self, challenge: &Challenge, data: &str) -> Result<HeaderValue, ClientError> {
        let need: Value = serde_json::from_str(data).map_err(|e| ClientError::NeedVoucher(e.to_string()))?;
        let required = need["requiredCumulative"]
            .as_str()
            .and_then(|s| s.parse::<u128>().ok())
            .ok_or_else(|| ClientError::NeedVoucher("no requiredCumulative".into()))?;
        self.voucher(challenge, required)
    }

    /// Adds `additional` to the deposit (counted in the deposit cap from now on: a top-up
    /// that does not land leaves vouchers above the real deposit, which the server refuses).
    pub fn top_up(
        &mut self,
        challenge: &Challenge,
        additional: u128,
        tx: TxParams,
    ) -> Result<HeaderValue, ClientError> {
        let channel = self.channel.ok_or(ClientError::NoChannel)?;
        let o = &self.offer;
        let approve = ITip20::approveCall { spender: o.escrow, amount: U256::from(additional) };
        let top_up = IStreamChannelEscrow::topUpCall { channelId: channel, additionalDeposit: U256::from(additional) };
        let raw = self.transaction(tx, [(o.currency, approve.abi_encode()), (o.escrow, top_up.abi_encode())])?;
        self.deposit = self.deposit.map(|d| d.saturating_add(additional));
        let payload = json!({"action": "topUp", "type": "transaction", "channelId": channel, "transaction": raw, "additionalDeposit": additional.to_string()});
        Ok(self.credential(challenge, payload))
    }

    /// Closes the channel with a final voucher for `cumulative` (what the last receipt
    /// says was spent), within the [spend caps](Self#spend-caps).
    pub fn close(&mut self, challenge: &Challenge, cumulative: u128) -> Result<HeaderValue, ClientError> {
        let channel = self.channel.ok_or(ClientError::NoChannel)?;
        self.check_cap(cumulative)?;
        let signature = self.sign(channel, cumulative)?;
        let payload = json!({"action": "close", "channelId": channel, "cumulativeAmount": cumulative.to_string(), "signature": signature});
        Ok(self.credential(challenge, payload))
    }

    fn sign(&self, channel: B256, cumulative: u128) -> Result<String, ClientError> {
        let hash = self.domain.signing_hash(channel, cumulative).map_err(|e| ClientError::Signing(e.to_string()))?;
        let signature = self.signer.sign_hash_sync(&hash).map_err(|e| ClientError::Signing(e.to_string()))?;
        Ok(format!("0x{}", alloy::hex::encode(signature.as_bytes())))
    }

    fn transaction(&self, tx: TxParams, calls: [(Address, Vec<u8>); 2]) -> Result<String, ClientError> {
        let builder = calls
            .into_iter()
            .fold(TempoTxBuilder::new(self.offer.chain_id), |b, (to, input)| b.call(to, input))
            .fee_token(self.offer.currency)
            .nonce(U256::ZERO, tx.nonce)
            .gas_limit(tx.gas_limit)
            .fees(tx.max_fee_per_gas, 1);
        let raw = builder.sign(&self.signer).map_err(|e| ClientError::Signing(e.to_string()))?;
        Ok(format!("0x{}", alloy::hex::encode(raw)))
    }

    fn credential(&self, challenge: &Challenge, payload: Value) -> HeaderValue {
        let source = format!("did:pkh:eip155:{}:{}", self.offer.chain_id, self.signer.address());
        Credential { challenge: challenge.clone(), payload, source: Some(source) }.to_header_value()
    }
}

fn read_offer(challenge: &Challenge) -> Result<Offer, ClientError> {
    let bad = |why: &str| ClientError::Challenge(why.to_owned());
    if challenge.method != "tempo" || challenge.intent != "session" {
        return Err(bad("not a tempo session challenge"));
    }
    let request = challenge.decode_request().map_err(|e| ClientError::Challenge(e.to_string()))?;
    let details = &request["methodDetails"];
    if details["sessionProtocol"].as_str().is_some_and(|p| p != "v1") {
        return Err(bad("only v1 sessions are supported"));
    }
    let address = |v: &Value, what: &str| v.as_str().and_then(|s| s.parse::<Address>().ok()).ok_or_else(|| bad(what));
    Ok(Offer {
        chain_id: details["chainId"].as_u64().ok_or_else(|| bad("no chainId"))?,
        escrow: address(&details["escrowContract"], "no escrowContract")?,
        currency: address(&request["currency"], "no currency")?,
        payee: address(&request["recipient"], "no recipient")?,
        unit_price: request["amount"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| bad("no amount"))?,
    })
}
