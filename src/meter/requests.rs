//! The per-request meter.

use http::{request, response};

use super::{MakeMeter, Meter};
use crate::amount::{Quote, Usage};

/// Counts one unit (`request`) per response, as soon as the response starts; the body is
/// free. It is its own [`MakeMeter`].
///
/// See the [module docs](super) for the other meters.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestMeter;

impl Meter for RequestMeter {
    fn on_response(&mut self, _head: &response::Parts) -> Usage {
        Usage::output(1)
    }

    fn on_data(&mut self, _data: &[u8]) -> Usage {
        Usage::output(1)
    }

    fn on_end(&mut self) -> Usage {
        Usage::output(1)
    }
}

impl MakeMeter for RequestMeter {
    type Meter = RequestMeter;

    fn make_meter(&self, _request: &request::Parts, _quote: &Quote) -> RequestMeter {
        RequestMeter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_one_request_whatever_the_body() {
        let (request, _) = http::Request::new(()).into_parts();
        let (head, _) = http::Response::new(()).into_parts();
        let mut meter =
            RequestMeter.make_meter(&request, &Quote::new(crate::Price::per_request(crate::Amount::new(1))));
        assert_eq!(meter.on_response(&head), Usage::output(1));
        assert_eq!(meter.on_data(b"hello"), Usage::output(1));
        assert_eq!(meter.on_event(b"data: x\n\n"), Usage::output(1));
        assert_eq!(meter.on_end(), Usage::output(1));
        assert_eq!(meter.cutoff(), None);
    }
}
