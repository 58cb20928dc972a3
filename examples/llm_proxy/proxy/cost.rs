//! Cost reporting, as OpenRouter does it: the `usage` of a completion carries what it cost.
//!
//! - `usage.cost`: a number, in the currency's whole units (dollars for a USD stablecoin);
//! - `usage.cost_base_units`: the same cost exact, a string of the token's base units
//!   (what the payment receipt's `spent` counts).
//!
//! A streamed completion gets both in its final `usage` chunk ([`CostBody`], inside the
//! payment layer, so the layer's meter reads the same usage it charges); a plain JSON one
//! in its `usage` and in the `x-cost` header (see [`unstream`](super::unstream)). The cost
//! is the model's `/v1/models` price applied to that usage: the payment layer charges
//! exactly that for a completion it delivered whole.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use serde_json::{Map, Value, json};

use super::catalog::{Catalog, Model};
use tollgate::Usage;

/// Adds `cost` and `cost_base_units` to `usage` (an OpenAI `usage` object) at `model`'s
/// price; returns the cost in whole units.
pub fn annotate(usage: &mut Map<String, Value>, model: &Model, catalog: &Catalog) -> f64 {
    let tokens = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let used = Usage { input: tokens("prompt_tokens"), output: tokens("completion_tokens") };
    let units = model.price.cost(used).map_or(0, |amount| amount.get());
    let dollars = catalog.dollars(units);
    usage.insert("cost".into(), json!(dollars));
    usage.insert("cost_base_units".into(), json!(units.to_string()));
    dollars
}

/// A streamed completion whose `usage` chunk gets its cost (see the [module docs](self)).
/// Its inner body hands out whole events; only a frame holding a `usage` object is parsed.
pub struct CostBody<B> {
    inner: Pin<Box<B>>,
    model: Arc<Model>,
    catalog: Arc<Catalog>,
}

impl<B> CostBody<B> {
    /// Wraps `inner`, the SSE body of a completion by `model`.
    pub fn new(inner: B, model: Arc<Model>, catalog: Arc<Catalog>) -> Self {
        CostBody { inner: Box::pin(inner), model, catalog }
    }

    fn priced(&self, data: Bytes) -> Bytes {
        if !has_usage_object(&data) {
            return data;
        }
        let Ok(text) = std::str::from_utf8(&data) else { return data };
        let mut out = BytesMut::with_capacity(data.len() + 64);
        for event in text.split_inclusive("\n\n") {
            let json = event.strip_prefix("data: ").map(str::trim_end);
            let parsed = json.and_then(|json| serde_json::from_str::<Value>(json).ok());
            match parsed {
                Some(mut chunk) if chunk.get("usage").is_some_and(Value::is_object) => {
                    if let Some(usage) = chunk["usage"].as_object_mut() {
                        annotate(usage, &self.model, &self.catalog);
                    }
                    out.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
                }
                _ => out.extend_from_slice(event.as_bytes()),
            }
        }
        out.freeze()
    }
}

/// Whether `data` holds `"usage"` followed by an object (not the `null` of content chunks).
fn has_usage_object(data: &[u8]) -> bool {
    memchr::memmem::find_iter(data, b"\"usage\"").any(|at| {
        let rest = data.get(at + 7..).unwrap_or_default();
        let mut after = rest.iter().skip_while(|b| b.is_ascii_whitespace() || **b == b':');
        after.next() == Some(&b'{')
    })
}

impl<B: Body<Data = Bytes>> Body for CostBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        Poll::Ready(Some(Ok(match frame.into_data() {
            Ok(data) => Frame::data(self.priced(data)),
            Err(frame) => frame,
        })))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // The cost makes a frame longer: only the lower bound still holds.
        let mut hint = SizeHint::new();
        hint.set_lower(self.inner.size_hint().lower());
        hint
    }
}

#[cfg(test)]
#[allow(unused_imports)] // the load run's bench builds this module without its tests
mod tests {
    use super::has_usage_object;

    #[test]
    fn only_a_usage_object_is_priced() {
        assert!(has_usage_object(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n"));
        assert!(has_usage_object(b"data: {\"usage\" : {\"prompt_tokens\":3}}\n\n"));
        assert!(!has_usage_object(b"data: {\"choices\":[],\"usage\":null}\n\n"));
        assert!(!has_usage_object(b"data: {\"content\":\"usage\"}\n\n"));
    }
}
