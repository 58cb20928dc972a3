//! Cutting frames into SSE events, each metered and forwarded only when paid for.

use bytes::Bytes;

use super::{Cost, Metering};
use crate::amount::Amount;
use crate::meter::{EventTooLarge, Meter};
use crate::store::ChannelStore;

impl<M: Meter, St: ChannelStore> Metering<M, St> {
    /// Meters the rest of the current frame: whole frames for plain bodies, event by
    /// event for SSE. Affordable events go out as one slice of the original frame (an
    /// event that began in an earlier frame as one frame of its own), so what one call
    /// charges goes out as one frame: a client that leaves between frames never pays for
    /// bytes it was not handed.
    pub(super) fn meter_rest(&mut self) {
        let chunk = std::mem::take(&mut self.rest);
        let Some(scanner) = &mut self.sse else {
            let usage = self.meter.on_data(&chunk);
            let cost = self.cost(usage);
            self.held.push(chunk);
            self.waiting = Some(cost);
            return;
        };
        let lease = self.account.as_ref().map_or(Amount::ZERO, |a| a.lease().amount);
        let max = self.policy.max_event_bytes;
        let (run_start, mut offset) = (0, 0);
        while let Some(n) = scanner.next_boundary(&chunk[offset..]) {
            let end = offset + n;
            if self.partial_len.saturating_add(n) > max {
                return self.too_large(&chunk, run_start..offset);
            }
            let usage = if self.partial.is_empty() {
                self.meter.on_event(&chunk[offset..end])
            } else {
                self.scratch.clear();
                self.partial.iter().for_each(|p| self.scratch.extend_from_slice(p));
                self.scratch.extend_from_slice(&chunk[offset..end]);
                self.meter.on_event(&self.scratch)
            };
            let cost = Cost::of(&self.price, usage);
            if cost.total <= lease {
                if let Some(account) = &mut self.account {
                    account.deliver(cost.total, cost.units);
                }
                if !self.partial.is_empty() {
                    // An event that spanned frames goes out whole, as one frame, before the
                    // next is metered: what is charged is what the next poll hands out.
                    self.partial.clear();
                    self.partial_len = 0;
                    self.out.push_back(Bytes::copy_from_slice(&self.scratch));
                    self.rest = chunk.slice(end..);
                    return;
                }
                offset = end;
                continue;
            }
            if run_start < offset {
                self.out.push_back(chunk.slice(run_start..offset));
            }
            self.held.append(&mut self.partial);
            self.partial_len = 0;
            self.held.push(chunk.slice(offset..end));
            self.waiting = Some(cost);
            self.rest = chunk.slice(end..);
            return;
        }
        if run_start < offset {
            self.out.push_back(if offset == chunk.len() && run_start == 0 {
                chunk.clone()
            } else {
                chunk.slice(run_start..offset)
            });
        }
        if offset < chunk.len() {
            // An event still open: kept until it ends, up to the limit.
            self.partial_len = self.partial_len.saturating_add(chunk.len() - offset);
            if self.partial_len > max {
                return self.too_large(&chunk, offset..offset);
            }
            self.partial.push(chunk.slice(offset..));
        }
    }

    /// The upstream sent an event over the limit: what went before it goes out, then the
    /// stream ends as an upstream failure.
    fn too_large(&mut self, chunk: &Bytes, delivered: std::ops::Range<usize>) {
        if !delivered.is_empty() {
            self.out.push_back(chunk.slice(delivered));
        }
        self.fail(EventTooLarge { limit: self.policy.max_event_bytes }.into());
    }
}
