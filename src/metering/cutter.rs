//! Where an event stream's frames are cut when the budget runs out: pure, no store, no
//! clock, so it is tested on its own.
//!
//! The metering body hands each inner frame to [`EventCutter::cut`] with a `pay` function
//! that meters one whole SSE event and says whether the lease covers it. The cutter finds
//! the event boundaries, joins an event that spans frames, and says which bytes go out,
//! which are held until more is paid, and which are still to cut.

use bytes::Bytes;

use crate::meter::{EventTooLarge, GrpcScanner, SseScanner};

/// Where a stream's units end: SSE events, or length-prefixed gRPC messages.
#[derive(Debug)]
pub(super) enum Framing {
    Sse(SseScanner),
    Grpc(GrpcScanner),
}

impl Framing {
    /// The framing of a response with these headers, if it has one the body cuts at.
    pub(super) fn of(headers: &http::HeaderMap) -> Option<Self> {
        if crate::meter::is_event_stream(headers) {
            Some(Framing::Sse(SseScanner::new()))
        } else if crate::meter::is_grpc(headers) {
            Some(Framing::Grpc(GrpcScanner::new()))
        } else {
            None
        }
    }

    fn next_boundary(&mut self, chunk: &[u8]) -> Option<usize> {
        match self {
            Framing::Sse(scanner) => scanner.next_boundary(chunk),
            Framing::Grpc(scanner) => scanner.next_boundary(chunk),
        }
    }
}

/// Cuts an event stream into whole SSE events (a gRPC stream into whole messages), carrying
/// an unfinished one between frames (up to a limit).
#[derive(Debug)]
pub(super) struct EventCutter {
    scanner: Framing,
    /// The start of an event that began in an earlier frame, and its length.
    carried: Vec<Bytes>,
    carried_len: usize,
    /// The carried event joined with its end, as `pay` sees it.
    joined: Vec<u8>,
    max_event_bytes: usize,
}

/// What became of one frame.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Cut<T> {
    /// Every event that ended in the frame was paid for: `forward` goes out as one frame
    /// (`None`: no event ended); an unfinished tail is carried to the next frame.
    Paid { forward: Option<Bytes> },
    /// An event carried over from earlier frames ended and was paid for: it goes out alone,
    /// as one frame, before `rest` (the frame after it) is cut.
    Joined { event: Bytes, rest: Bytes },
    /// An event was not paid for (`short` says by how much): `forward` (the paid events
    /// before it) goes out, `held` (that event) waits for more headroom, and `rest` (the
    /// frame after it) is cut once it is paid.
    Short { forward: Option<Bytes>, held: Vec<Bytes>, rest: Bytes, short: T },
    /// An event went over the limit: `forward` (the paid events before it) goes out, then
    /// the stream fails with `error`.
    TooLarge { forward: Option<Bytes>, error: EventTooLarge },
}

impl EventCutter {
    /// A cutter at the start of a stream whose events may be up to `max_event_bytes` long.
    pub(super) fn new(framing: Framing, max_event_bytes: usize) -> Self {
        EventCutter { scanner: framing, carried: Vec::new(), carried_len: 0, joined: Vec::new(), max_event_bytes }
    }

    /// Whether the stream is SSE (the layer may add its own events to it).
    pub(super) fn is_sse(&self) -> bool {
        matches!(self.scanner, Framing::Sse(_))
    }

    /// Cuts `chunk`, the next frame of the stream. `pay` is called once per event that ends
    /// in it, in order, with the whole event (joined if it spanned frames); it returns `Err`
    /// when the event is not paid for, and the cut stops there.
    ///
    /// Paid events go out as one slice of `chunk` (so what one call charges goes out as one
    /// frame: a client that leaves between frames never pays for bytes it was not handed);
    /// an event that spanned frames goes out alone, before the rest is cut.
    pub(super) fn cut<T>(&mut self, chunk: Bytes, mut pay: impl FnMut(&[u8]) -> Result<(), T>) -> Cut<T> {
        let max = self.max_event_bytes;
        let run = |offset: usize| (offset > 0).then(|| chunk.slice(..offset));
        let mut offset = 0;
        while let Some(n) = self.scanner.next_boundary(&chunk[offset..]) {
            let end = offset + n;
            if self.carried_len.saturating_add(n) > max {
                return Cut::TooLarge { forward: run(offset), error: EventTooLarge { limit: max } };
            }
            let paid = if self.carried.is_empty() {
                pay(&chunk[offset..end])
            } else {
                self.joined.clear();
                self.carried.iter().for_each(|piece| self.joined.extend_from_slice(piece));
                self.joined.extend_from_slice(&chunk[offset..end]);
                pay(&self.joined)
            };
            match paid {
                Ok(()) if self.carried.is_empty() => offset = end,
                // A carried event is always the frame's first: nothing ran before it.
                Ok(()) => {
                    self.carried.clear();
                    self.carried_len = 0;
                    return Cut::Joined { event: Bytes::copy_from_slice(&self.joined), rest: chunk.slice(end..) };
                }
                Err(short) => {
                    let mut held = std::mem::take(&mut self.carried);
                    self.carried_len = 0;
                    held.push(chunk.slice(offset..end));
                    return Cut::Short { forward: run(offset), held, rest: chunk.slice(end..), short };
                }
            }
        }
        let forward = match offset {
            0 => None,
            all if all == chunk.len() => Some(chunk.clone()),
            some => Some(chunk.slice(..some)),
        };
        if offset < chunk.len() {
            // An event still open: kept until it ends, up to the limit.
            self.carried_len = self.carried_len.saturating_add(chunk.len() - offset);
            if self.carried_len > max {
                return Cut::TooLarge { forward, error: EventTooLarge { limit: max } };
            }
            self.carried.push(chunk.slice(offset..));
        }
        Cut::Paid { forward }
    }

    /// The unfinished event carried when the stream ended, as its pieces and joined (for
    /// the meter); `None` if there is none.
    pub(super) fn take_tail(&mut self) -> Option<(Vec<Bytes>, &[u8])> {
        if self.carried.is_empty() {
            return None;
        }
        self.joined.clear();
        self.carried.iter().for_each(|piece| self.joined.extend_from_slice(piece));
        self.carried_len = 0;
        Some((std::mem::take(&mut self.carried), &self.joined))
    }

    /// Drops the carried event (the stream ends without it).
    pub(super) fn clear(&mut self) {
        self.carried.clear();
        self.carried_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Pays every event; records them.
    fn all(seen: &mut Vec<String>) -> impl FnMut(&[u8]) -> Result<(), ()> + '_ {
        |event| {
            seen.push(String::from_utf8_lossy(event).into_owned());
            Ok(())
        }
    }

    #[test]
    fn whole_events_go_out_as_the_frame_itself() {
        let mut cutter = EventCutter::new(Framing::Sse(SseScanner::new()), 1024);
        let frame = bytes("data: a\n\ndata: b\n\n");
        let mut seen = Vec::new();
        let Cut::Paid { forward: Some(out) } = cutter.cut(frame.clone(), all(&mut seen)) else { panic!() };
        assert_eq!(out, frame);
        assert_eq!(out.as_ptr(), frame.as_ptr(), "no copy");
        assert_eq!(seen, ["data: a\n\n", "data: b\n\n"]);
    }

    #[test]
    fn an_open_tail_is_carried_and_goes_out_joined_and_alone() {
        let mut cutter = EventCutter::new(Framing::Sse(SseScanner::new()), 1024);
        let mut seen = Vec::new();
        assert_eq!(
            cutter.cut(bytes("data: a\n\ndata: "), all(&mut seen)),
            Cut::Paid { forward: Some(bytes("data: a\n\n")) }
        );
        assert_eq!(
            cutter.cut(bytes("b\n\ndata: c\n\n"), all(&mut seen)),
            Cut::Joined { event: bytes("data: b\n\n"), rest: bytes("data: c\n\n") }
        );
        assert_eq!(cutter.cut(bytes("data: c\n\n"), all(&mut seen)), Cut::Paid { forward: Some(bytes("data: c\n\n")) });
        assert_eq!(seen, ["data: a\n\n", "data: b\n\n", "data: c\n\n"]);
        assert_eq!(cutter.take_tail(), None);
    }

    #[test]
    fn the_budget_cuts_before_the_first_unpaid_event() {
        let mut cutter = EventCutter::new(Framing::Sse(SseScanner::new()), 1024);
        let mut paid = 1;
        let cut = cutter.cut(bytes("data: a\n\ndata: b\n\ndata: c\n\n"), |_| {
            if paid == 0 {
                return Err(7);
            }
            paid -= 1;
            Ok(())
        });
        assert_eq!(
            cut,
            Cut::Short {
                forward: Some(bytes("data: a\n\n")),
                held: vec![bytes("data: b\n\n")],
                rest: bytes("data: c\n\n"),
                short: 7
            }
        );
    }

    #[test]
    fn an_unpaid_event_that_spanned_frames_is_held_in_its_pieces() {
        let mut cutter = EventCutter::new(Framing::Sse(SseScanner::new()), 1024);
        assert_eq!(cutter.cut(bytes("data: x"), |_| Err(())), Cut::Paid { forward: None });
        let cut = cutter.cut(bytes("yz\n\n"), |event| if event == b"data: xyz\n\n" { Err(()) } else { Ok(()) });
        assert_eq!(
            cut,
            Cut::Short { forward: None, held: vec![bytes("data: x"), bytes("yz\n\n")], rest: Bytes::new(), short: () }
        );
        assert_eq!(cutter.take_tail(), None, "held, no longer carried");
    }

    #[test]
    fn an_event_over_the_limit_fails_after_the_events_before_it() {
        let mut cutter = EventCutter::new(Framing::Sse(SseScanner::new()), 10);
        let mut seen = Vec::new();
        let cut = cutter.cut(bytes("data: a\n\ndata: too long\n\n"), all(&mut seen));
        assert_eq!(cut, Cut::TooLarge { forward: Some(bytes("data: a\n\n")), error: EventTooLarge { limit: 10 } });
        assert_eq!(seen, ["data: a\n\n"], "the long one is never metered");

        let mut cutter = EventCutter::new(Framing::Sse(SseScanner::new()), 10);
        assert_eq!(cutter.cut(bytes("data: 12"), all(&mut seen)), Cut::Paid { forward: None });
        let cut = cutter.cut(bytes("3456"), all(&mut seen));
        assert_eq!(cut, Cut::TooLarge { forward: None, error: EventTooLarge { limit: 10 } }, "an open one too");
    }

    #[test]
    fn the_tail_at_the_end_is_handed_back_whole() {
        let mut cutter = EventCutter::new(Framing::Sse(SseScanner::new()), 1024);
        let _ = cutter.cut(bytes("data: a"), |_| Ok::<_, ()>(()));
        let _ = cutter.cut(bytes("bc"), |_| Ok::<_, ()>(()));
        let (pieces, joined) = cutter.take_tail().expect("a tail");
        assert_eq!(joined, b"data: abc");
        assert_eq!(pieces, [bytes("data: a"), bytes("bc")]);
        assert_eq!(cutter.take_tail(), None);
    }

    mod props {
        use proptest::prelude::*;

        use super::super::*;

        /// Feeds `stream` cut at `splits`, paying `budget` events, re-feeding what comes back
        /// as `rest` the way the metering body does; returns what went out, what was held,
        /// and the events paid.
        fn run(stream: &[u8], splits: &[usize], budget: usize) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
            run_framed(Framing::Sse(SseScanner::new()), stream, splits, budget)
        }

        fn run_framed(
            framing: Framing,
            stream: &[u8],
            splits: &[usize],
            budget: usize,
        ) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
            let mut cutter = EventCutter::new(framing, usize::MAX);
            let (mut out, mut held, mut paid) = (Vec::new(), Vec::new(), Vec::new());
            let mut frames: Vec<Bytes> = Vec::new();
            let mut last = 0;
            for &at in splits.iter().chain(std::iter::once(&stream.len())) {
                let at = at.clamp(last, stream.len());
                frames.push(Bytes::copy_from_slice(&stream[last..at]));
                last = at;
            }
            let mut frames = frames.into_iter();
            let mut pending = frames.next();
            while let Some(frame) = pending.take() {
                let cut = cutter.cut(frame, |event| {
                    if paid.len() == budget {
                        return Err(());
                    }
                    paid.push(event.to_vec());
                    Ok(())
                });
                match cut {
                    Cut::Paid { forward } => {
                        out.extend_from_slice(&forward.unwrap_or_default());
                        pending = frames.next();
                    }
                    Cut::Joined { event, rest } => {
                        out.extend_from_slice(&event);
                        pending = Some(rest);
                    }
                    Cut::Short { forward, held: h, .. } => {
                        out.extend_from_slice(&forward.unwrap_or_default());
                        h.iter().for_each(|piece| held.extend_from_slice(piece));
                        break;
                    }
                    Cut::TooLarge { .. } => unreachable!("no limit"),
                }
            }
            (out, held, paid)
        }

        fn stream() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(prop::sample::select(vec![b'a', b'b', b':', b' ', b'\n', b'\r']), 0..80)
        }

        proptest! {
            /// However the stream is split into frames, the same events are paid for, what
            /// goes out is exactly the paid events in order, and the first unpaid event is
            /// held whole.
            #[test]
            fn frames_never_change_what_is_paid_or_sent(
                stream in stream(),
                splits in prop::collection::vec(0usize..80, 0..8),
                budget in 0usize..6,
            ) {
                let mut splits = splits;
                splits.sort_unstable();
                let (out, held, paid) = run(&stream, &splits, budget);
                let (whole_out, whole_held, whole_paid) = run(&stream, &[], budget);
                prop_assert_eq!(&paid, &whole_paid);
                prop_assert_eq!(&out, &whole_out);
                prop_assert_eq!(&held, &whole_held);
                prop_assert_eq!(out, paid.concat());
                prop_assert!(stream.starts_with(&[whole_out, whole_held].concat()));
            }

            /// gRPC: however the messages are split into frames, exactly the first `budget`
            /// messages go out, each whole, and the next one is held whole.
            #[test]
            fn grpc_messages_go_out_whole_and_paid(
                payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..10), 0..8),
                splits in prop::collection::vec(0usize..100, 0..10),
                budget in 0usize..8,
            ) {
                let messages: Vec<Vec<u8>> = payloads
                    .iter()
                    .map(|p| [&[0][..], &(p.len() as u32).to_be_bytes(), p].concat())
                    .collect();
                let stream = messages.concat();
                let mut splits = splits;
                splits.sort_unstable();
                let (out, held, paid) = run_framed(Framing::Grpc(GrpcScanner::new()), &stream, &splits, budget);
                let sent = budget.min(messages.len());
                prop_assert_eq!(&paid, &messages[..sent].to_vec());
                prop_assert_eq!(out, messages[..sent].concat());
                prop_assert_eq!(held, messages.get(sent).cloned().unwrap_or_default());
            }
        }
    }
}
