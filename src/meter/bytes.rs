//! The byte meter.

use http::{request, response};

use super::{MakeMeter, Meter};
use crate::amount::{Quote, Usage};

/// Counts body bytes (unit `byte`): every data frame of a plain body, every event of an
/// SSE body, line ends and comments included. It is its own [`MakeMeter`] and builds a
/// meter at zero for each request.
///
/// See the [module docs](super) for the other meters.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByteMeter {
    bytes: u64,
}

impl ByteMeter {
    /// A meter at zero.
    pub const fn new() -> Self {
        ByteMeter { bytes: 0 }
    }

    fn add(&mut self, data: &[u8]) -> Usage {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.bytes = self.bytes.saturating_add(len);
        Usage::output(self.bytes)
    }
}

impl Meter for ByteMeter {
    fn on_response(&mut self, _head: &response::Parts) -> Usage {
        Usage::output(self.bytes)
    }

    fn on_data(&mut self, data: &[u8]) -> Usage {
        self.add(data)
    }

    fn on_event(&mut self, event: &[u8]) -> Usage {
        self.add(event)
    }

    fn on_end(&mut self) -> Usage {
        Usage::output(self.bytes)
    }
}

impl MakeMeter for ByteMeter {
    type Meter = ByteMeter;

    fn make_meter(&self, _request: &request::Parts, _quote: &Quote) -> ByteMeter {
        ByteMeter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_frames_and_events_cumulatively() {
        let (request, _) = http::Request::new(()).into_parts();
        let (head, _) = http::Response::new(()).into_parts();
        let used = ByteMeter { bytes: 99 };
        let mut meter = used.make_meter(&request, &Quote::new(crate::Price::per_request(crate::Amount::new(1))));
        assert_eq!(meter.on_response(&head), Usage::output(0));
        assert_eq!(meter.on_data(b"hello"), Usage::output(5));
        assert_eq!(meter.on_event(b": ping\n\n"), Usage::output(13));
        assert_eq!(meter.on_data(b""), Usage::output(13));
        assert_eq!(meter.on_end(), Usage::output(13));
    }
}
