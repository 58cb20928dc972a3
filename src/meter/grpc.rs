//! The gRPC message meter.

use http::{request, response};

use super::{GrpcScanner, MakeMeter, Meter};
use crate::amount::{Quote, Usage};

/// What a [`GrpcMessageMeter`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Unit {
    #[default]
    Message,
    PayloadByte,
}

/// Counts the length-prefixed messages of a gRPC response (unit `message`), or their
/// payload bytes ([`per_payload_byte`](Self::per_payload_byte), unit `byte`).
///
/// For a `content-type: application/grpc` response the metering body cuts the stream at
/// message boundaries, however the messages are split across HTTP/2 frames, and hands the
/// meter one whole message at a time ([`Meter::on_event`]): a message goes out only once
/// it is whole and paid for, and a message that is not paid for never leaves. When the
/// budget runs out the body ends with the trailers `grpc-status: 8` (`RESOURCE_EXHAUSTED`)
/// and a `grpc-message`, so a gRPC client sees a clean status; a stream that ends on its
/// own passes the service's own trailers through.
///
/// On a body that is not gRPC ([`Meter::on_data`]) it counts a message as soon as its
/// first byte passes (per message), or every byte, prefixes included (per byte): upper
/// bounds, as the [module docs](super) ask. It is its own [`MakeMeter`] and builds a
/// meter at zero for each request.
///
/// ```
/// use tollgate::meter::{GrpcMessageMeter, Meter};
/// use tollgate::Usage;
///
/// let mut meter = GrpcMessageMeter::per_message();
/// assert_eq!(meter.on_event(&[0, 0, 0, 0, 2, b'h', b'i']), Usage::output(1));
/// let mut meter = GrpcMessageMeter::per_payload_byte();
/// assert_eq!(meter.on_event(&[0, 0, 0, 0, 2, b'h', b'i']), Usage::output(2));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMessageMeter {
    unit: Unit,
    units: u64,
    /// For bodies that reach the meter frame by frame.
    scanner: GrpcScanner,
}

impl GrpcMessageMeter {
    /// A meter at zero charging one unit per message.
    pub const fn per_message() -> Self {
        GrpcMessageMeter { unit: Unit::Message, units: 0, scanner: GrpcScanner::new() }
    }

    /// A meter at zero charging one unit per payload byte (the 5-byte prefixes are free).
    pub const fn per_payload_byte() -> Self {
        GrpcMessageMeter { unit: Unit::PayloadByte, units: 0, scanner: GrpcScanner::new() }
    }

    fn add(&mut self, units: usize) -> Usage {
        self.units = self.units.saturating_add(u64::try_from(units).unwrap_or(u64::MAX));
        Usage::output(self.units)
    }
}

impl Meter for GrpcMessageMeter {
    fn on_response(&mut self, _head: &response::Parts) -> Usage {
        Usage::output(self.units)
    }

    fn on_data(&mut self, data: &[u8]) -> Usage {
        if self.unit == Unit::PayloadByte {
            return self.add(data.len());
        }
        let mut rest = data;
        while !rest.is_empty() {
            if !self.scanner.is_mid_message() {
                self.add(1);
            }
            match self.scanner.next_boundary(rest) {
                Some(end) => rest = rest.get(end..).unwrap_or_default(),
                None => break,
            }
        }
        Usage::output(self.units)
    }

    fn on_event(&mut self, message: &[u8]) -> Usage {
        match self.unit {
            Unit::Message => self.add(1),
            Unit::PayloadByte => self.add(message.len().saturating_sub(5)),
        }
    }

    fn on_end(&mut self) -> Usage {
        Usage::output(self.units)
    }
}

impl MakeMeter for GrpcMessageMeter {
    type Meter = GrpcMessageMeter;

    fn make_meter(&self, _request: &request::Parts, _quote: &Quote) -> GrpcMessageMeter {
        GrpcMessageMeter { unit: self.unit, units: 0, scanner: GrpcScanner::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn a_fresh_meter_per_request_keeps_the_unit() {
        let (request, _) = http::Request::new(()).into_parts();
        let quote = Quote::new(crate::Price::per_request(crate::Amount::new(1)));
        let mut used = GrpcMessageMeter::per_payload_byte();
        used.on_event(&message(b"abc"));
        let mut meter = used.make_meter(&request, &quote);
        let (head, _) = http::Response::new(()).into_parts();
        assert_eq!(meter.on_response(&head), Usage::output(0));
        assert_eq!(meter.on_event(&message(b"hello")), Usage::output(5));
        assert_eq!(meter.on_end(), Usage::output(5));
    }

    #[test]
    fn frame_by_frame_a_message_counts_at_its_first_byte() {
        let mut meter = GrpcMessageMeter::per_message();
        let stream = [message(b"ab"), message(b"")].concat();
        assert_eq!(meter.on_data(&stream[..1]), Usage::output(1), "begun: charged before it goes out");
        assert_eq!(meter.on_data(&stream[1..7]), Usage::output(1));
        assert_eq!(meter.on_data(&stream[7..]), Usage::output(2));
        assert_eq!(meter.on_data(&[]), Usage::output(2));
    }

    proptest! {
        /// However the messages are split into frames, frame by frame counts them all, and
        /// never fewer than the whole messages that went out.
        #[test]
        fn any_framing_counts_the_same_messages(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..10), 0..8),
            cuts in prop::collection::vec(0usize..100, 0..10),
        ) {
            let stream: Vec<u8> = payloads.iter().flat_map(|p| message(p)).collect();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut meter = GrpcMessageMeter::per_message();
            let mut last = 0;
            let mut whole = 0u64;
            let mut ends = payloads.iter().scan(0, |end, p| { *end += 5 + p.len(); Some(*end) }).peekable();
            for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
                let cut = cut.clamp(last, stream.len());
                let counted = meter.on_data(&stream[last..cut]).total();
                while ends.next_if(|&end| end <= cut).is_some() {
                    whole += 1;
                }
                prop_assert!(counted >= whole, "an unpaid message went out");
                last = cut;
            }
            prop_assert_eq!(meter.on_end(), Usage::output(payloads.len() as u64));
        }
    }
}
