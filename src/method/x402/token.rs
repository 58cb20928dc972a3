//! The token calls x402 needs (EIP-3009, EIP-2612, ERC-20), over any [`X402Chain`].

#![allow(missing_docs)]

use std::future::Future;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::SolCall;

use super::error::{X402Error, X402ErrorKind};
use crate::method::tempo::chain::{ChainError, ChainErrorKind, Mined, RpcChain, TempoChain};

alloy::sol! {
    /// An ERC-20 with EIP-3009 and EIP-2612 (USDC, the test token).
    interface IAuthorizedToken {
        function balanceOf(address owner) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function nonces(address owner) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;
        function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;
        function transferFrom(address from, address to, uint256 value) external returns (bool);
    }
}

/// What x402 needs from a chain: read-only calls, and transactions sent from the payee's key.
/// [`RpcChain`] implements it (the same JSON-RPC access and nonce handling as the Tempo
/// method); tests may fake it.
pub trait X402Chain: Send + Sync + 'static {
    /// One `eth_call` at the latest block.
    fn call(&self, to: Address, input: Bytes) -> impl Future<Output = Result<Bytes, ChainError>> + Send;

    /// Sends `input` to `to` from the payee's key and waits until it is mined.
    /// [`ChainErrorKind::Rejected`]: the node refused it (nothing was sent);
    /// [`ChainErrorKind::Unavailable`]: it may or may not have been sent or mined.
    fn send(&self, to: Address, input: Bytes) -> impl Future<Output = Result<Mined, ChainError>> + Send;

    /// The account [`send`](Self::send) sends from.
    fn sender(&self) -> Address;
}

impl X402Chain for RpcChain {
    fn call(&self, to: Address, input: Bytes) -> impl Future<Output = Result<Bytes, ChainError>> + Send {
        RpcChain::call(self, to, input)
    }

    fn send(&self, to: Address, input: Bytes) -> impl Future<Output = Result<Mined, ChainError>> + Send {
        TempoChain::send(self, to, input)
    }

    fn sender(&self) -> Address {
        self.payee_address()
    }
}

fn unavailable(e: ChainError) -> X402Error {
    X402Error::new(X402ErrorKind::Unavailable, format!("token read failed: {e}"))
}

fn undecodable(e: impl std::fmt::Display) -> X402Error {
    X402Error::new(X402ErrorKind::Unavailable, format!("token answer undecodable: {e}"))
}

async fn read<C: X402Chain, Call: SolCall>(chain: &C, token: Address, call: Call) -> Result<Call::Return, X402Error> {
    let out = chain.call(token, call.abi_encode().into()).await.map_err(unavailable)?;
    Call::abi_decode_returns(&out).map_err(undecodable)
}

/// Typed reads of one token.
pub(crate) struct Token<'a, C> {
    pub(crate) chain: &'a C,
    pub(crate) address: Address,
}

impl<C: X402Chain> Token<'_, C> {
    pub(crate) async fn balance_of(&self, owner: Address) -> Result<U256, X402Error> {
        read(self.chain, self.address, IAuthorizedToken::balanceOfCall { owner }).await
    }

    pub(crate) async fn allowance(&self, owner: Address, spender: Address) -> Result<U256, X402Error> {
        read(self.chain, self.address, IAuthorizedToken::allowanceCall { owner, spender }).await
    }

    pub(crate) async fn nonces(&self, owner: Address) -> Result<U256, X402Error> {
        read(self.chain, self.address, IAuthorizedToken::noncesCall { owner }).await
    }

    /// Whether `authorizer`'s EIP-3009 `nonce` was used.
    pub(crate) async fn authorization_used(&self, authorizer: Address, nonce: B256) -> Result<bool, X402Error> {
        read(self.chain, self.address, IAuthorizedToken::authorizationStateCall { authorizer, nonce }).await
    }
}

/// Whether a chain error means the transaction surely was not sent.
pub(crate) fn surely_unsent(e: &ChainError) -> bool {
    e.kind() == ChainErrorKind::Rejected
}
