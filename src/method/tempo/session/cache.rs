//! [`ChannelCache`]: on-chain channel reads, kept in memory for a short time.
//!
//! Safe to lose: a restarted instance reads the chain again, and every money decision that
//! must be current (a close, a settlement, a top-up) refreshes it first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::primitives::B256;

use crate::method::tempo::chain::{ChainError, OnChainChannel, TempoChain};
use crate::method::tempo::{ChannelDescriptor, SessionConfig, SessionProtocol};

/// On-chain channel reads, cached for a short TTL (the reference server re-reads every 5 s
/// because a read per voucher hits RPC rate limits).
#[derive(Debug)]
pub(crate) struct ChannelCache {
    ttl: Duration,
    entries: Mutex<HashMap<B256, (Instant, OnChainChannel)>>,
}

impl ChannelCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        ChannelCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn forget(&self, id: B256) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    pub(crate) async fn get<C: TempoChain>(
        &self,
        chain: &C,
        config: &SessionConfig,
        id: B256,
        descriptor: Option<&ChannelDescriptor>,
    ) -> Result<OnChainChannel, ChainError> {
        let cached = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.get(&id).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, c)| c.clone())
        };
        match cached {
            Some(channel) => Ok(channel),
            None => self.refresh(chain, config, id, descriptor).await,
        }
    }

    /// Reads the channel: v1 from the escrow; v2 from the reserve, with the parties taken
    /// from the descriptor (which hashes to the channel id, so it cannot lie about them).
    pub(crate) async fn refresh<C: TempoChain>(
        &self,
        chain: &C,
        config: &SessionConfig,
        id: B256,
        descriptor: Option<&ChannelDescriptor>,
    ) -> Result<OnChainChannel, ChainError> {
        let channel = match config.protocol {
            SessionProtocol::V1 => chain.channel(config.escrow, id).await?,
            SessionProtocol::V2 => {
                let state = chain.reserve_state(config.escrow, id).await?;
                match descriptor {
                    Some(d) if state.deposit > 0 => OnChainChannel {
                        finalized: false,
                        close_requested_at: state.close_requested_at,
                        payer: d.payer,
                        payee: d.payee,
                        token: d.token,
                        authorized_signer: d.authorized_signer,
                        deposit: state.deposit,
                        settled: state.settled,
                    },
                    _ => OnChainChannel::default(),
                }
            }
        };
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (Instant::now(), channel.clone()));
        Ok(channel)
    }
}
