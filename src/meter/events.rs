//! The SSE event meter.

use http::{request, response};

use super::{MakeMeter, Meter, sse_fields};
use crate::amount::{Quote, Usage};

/// Counts server-sent events that carry data (unit `event`).
///
/// An event counts when it has at least one `data` field, even an empty one (browsers
/// dispatch those). Free: comments and keep-alives, events with no `data` field (blank
/// lines, `event:`-only events), and the `data: [DONE]` that ends OpenAI-style streams.
///
/// It counts nothing for a body that is not `text/event-stream` ([`Meter::on_data`] is
/// free): pair it with a price that covers such responses upfront, or use
/// [`ByteMeter`](super::ByteMeter) or [`RequestMeter`](super::RequestMeter) for them.
/// It is its own [`MakeMeter`] and builds a meter at zero for each request.
///
/// See the [module docs](super) for the other meters.
#[derive(Clone, Copy, Debug, Default)]
pub struct EventMeter {
    events: u64,
}

impl EventMeter {
    /// A meter at zero.
    pub const fn new() -> Self {
        EventMeter { events: 0 }
    }
}

/// Whether `event` is billable: it has data, and the data is not `[DONE]`.
fn is_billable(event: &[u8]) -> bool {
    let mut data = sse_fields(event).filter(|field| field.name == b"data");
    match (data.next(), data.next()) {
        (None, _) => false,
        // Several data lines join with `\n`, so they never spell `[DONE]`.
        (Some(first), None) => first.value != b"[DONE]",
        (Some(_), Some(_)) => true,
    }
}

impl Meter for EventMeter {
    fn on_response(&mut self, _head: &response::Parts) -> Usage {
        Usage::output(self.events)
    }

    fn on_data(&mut self, _data: &[u8]) -> Usage {
        Usage::output(self.events)
    }

    fn on_event(&mut self, event: &[u8]) -> Usage {
        if is_billable(event) {
            self.events = self.events.saturating_add(1);
        }
        Usage::output(self.events)
    }

    fn on_end(&mut self) -> Usage {
        Usage::output(self.events)
    }
}

impl MakeMeter for EventMeter {
    type Meter = EventMeter;

    fn make_meter(&self, _request: &request::Parts, _quote: &Quote) -> EventMeter {
        EventMeter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_data_events_only() {
        let (request, _) = http::Request::new(()).into_parts();
        let (head, _) = http::Response::new(()).into_parts();
        let used = EventMeter { events: 7 };
        let mut meter = used.make_meter(&request, &Quote::new(crate::Price::per_request(crate::Amount::new(1))));
        assert_eq!(meter.on_response(&head), Usage::output(0));
        let events: [(&[u8], u64); 10] = [
            (b"data: {\"a\":1}\n\n", 1),
            (b": keep-alive\n\n", 1),
            (b"\n", 1),
            (b"event: ping\r\n\r", 1),
            (b"\nevent: delta\r\ndata: x\r\n\r", 2),
            (b"data: a\ndata: b\n\n", 3),
            (b"data:\n\n", 4),
            (b"data: [DONE]\n\n", 4),
            (b"data:[DONE]\r\r", 4),
            (b"data: [DONE] \n\n", 5),
        ];
        for (event, total) in events {
            assert_eq!(meter.on_event(event), Usage::output(total), "{:?}", String::from_utf8_lossy(event));
        }
        assert_eq!(meter.on_data(b"data: x\n\n"), Usage::output(5));
        assert_eq!(meter.on_end(), Usage::output(5));
    }
}
