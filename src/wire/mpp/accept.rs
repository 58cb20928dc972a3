//! The `Accept-Payment` request header: the client's preferred methods and intents.

use http::HeaderValue;

/// More entries than any client sends; bounds the work per request.
const MAX_ENTRIES: usize = 32;

/// A parsed `Accept-Payment` header, such as `tempo/session, tempo/*;q=0.5, */*;q=0`.
///
/// Each entry is `method/intent`, either part `*`, with an optional `;q=` weight
/// (an HTTP qvalue; omitted means 1, and 0 means "do not use"). Other parameters are
/// ignored.
///
/// ```
/// use http::HeaderValue;
/// use tollgate::wire::mpp::AcceptPayment;
///
/// let accept = AcceptPayment::parse(&HeaderValue::from_static("tempo/session, */*;q=0.1")).unwrap();
/// let offers = [("tempo", "charge"), ("tempo", "session")];
/// assert_eq!(accept.order(&offers), [1, 0]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptPayment {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// `None` is `*`.
    method: Option<Box<str>>,
    intent: Option<Box<str>>,
    /// Thousandths, 0 to 1000.
    q: u16,
}

impl Entry {
    fn matches(&self, method: &str, intent: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method) && self.intent.as_deref().is_none_or(|i| i == intent)
    }

    fn specificity(&self) -> u8 {
        u8::from(self.method.is_some()) + u8::from(self.intent.is_some())
    }
}

impl AcceptPayment {
    /// Parses the header, or `None` when it is empty or malformed (a server then
    /// ignores it, as mppx does).
    pub fn parse(value: &HeaderValue) -> Option<AcceptPayment> {
        let mut entries = Vec::new();
        for part in value.to_str().ok()?.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if entries.len() == MAX_ENTRIES {
                return None;
            }
            entries.push(parse_entry(part)?);
        }
        (!entries.is_empty()).then_some(AcceptPayment { entries })
    }

    /// Orders `offers` (`(method, intent)` pairs, in the server's order) by preference:
    /// the indices of offers with q > 0, highest q first, ties in server order.
    ///
    /// An offer's q comes from the most specific entry that matches it (`a/b` over
    /// `a/*` over `*/*`; among equals, the higher q, then the earlier entry), so
    /// `tempo/charge;q=0` opts out of one offer under a broader `tempo/*`. If no offer
    /// is left, all are returned in server order, as mppx does.
    pub fn order(&self, offers: &[(&str, &str)]) -> Vec<usize> {
        let mut ranked: Vec<(usize, u16)> = offers
            .iter()
            .enumerate()
            .filter_map(|(i, &(method, intent))| Some((i, self.q(method, intent)?)))
            .filter(|&(_, q)| q > 0)
            .collect();
        if ranked.is_empty() {
            return (0..offers.len()).collect();
        }
        ranked.sort_by_key(|&(_, q)| std::cmp::Reverse(q)); // stable: ties keep server order
        ranked.into_iter().map(|(i, _)| i).collect()
    }

    /// The q (in thousandths) of the best entry matching this offer.
    fn q(&self, method: &str, intent: &str) -> Option<u16> {
        let mut best: Option<&Entry> = None;
        for entry in self.entries.iter().filter(|e| e.matches(method, intent)) {
            // Strictly better only, so the earlier entry wins among equals.
            if best.is_none_or(|b| (entry.specificity(), entry.q) > (b.specificity(), b.q)) {
                best = Some(entry);
            }
        }
        best.map(|e| e.q)
    }
}

fn parse_entry(part: &str) -> Option<Entry> {
    let mut pieces = part.split(';');
    let (method, intent) = pieces.next()?.split_once('/')?;
    let (method, intent) = (token(method.trim())?, token(intent.trim())?);
    let mut q = 1000;
    for param in pieces.map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=')?;
        let name = name.trim_end();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return None;
        }
        if name.eq_ignore_ascii_case("q") {
            q = qvalue(value.trim_start())?;
        }
    }
    Some(Entry { method, intent, q })
}

/// `*` as `Some(None)`, a valid name as `Some(Some(name))`, anything else `None`.
fn token(s: &str) -> Option<Option<Box<str>>> {
    if s == "*" {
        return Some(None);
    }
    let valid = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then(|| Some(s.into()))
}

/// An HTTP qvalue, `0[.ddd]` or `1[.000]`, in thousandths.
fn qvalue(s: &str) -> Option<u16> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths =
        fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0, |n, d| n * 10 + u16::from(d - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(header: &'static str, offers: &[(&str, &str)]) -> Vec<usize> {
        AcceptPayment::parse(&HeaderValue::from_static(header)).unwrap().order(offers)
    }

    const OFFERS: [(&str, &str); 4] = [("tempo", "charge"), ("stripe", "charge"), ("tempo", "session"), ("x", "y")];

    #[test]
    fn sorts_by_q_and_keeps_server_order_on_ties() {
        assert_eq!(order("tempo/session;q=0.9, stripe/charge, tempo/charge;q=0.9", &OFFERS), [1, 0, 2]);
        assert_eq!(order("*/*", &OFFERS), [0, 1, 2, 3]);
        assert_eq!(order("*/charge;q=0.5, */session", &OFFERS), [2, 0, 1]);
    }

    #[test]
    fn the_most_specific_entry_decides() {
        assert_eq!(order("tempo/*, tempo/charge;q=0", &OFFERS), [2]);
        assert_eq!(order("tempo/charge;q=0, */*;q=0.1", &OFFERS), [1, 2, 3]);
        assert_eq!(order("*/*;q=0.2, stripe/*;q=0.3, stripe/charge;q=0.1", &OFFERS), [0, 2, 3, 1]);
        // Equal specificity: the higher q.
        assert_eq!(order("tempo/charge;q=0, tempo/charge;q=0.5", &OFFERS), [0]);
    }

    #[test]
    fn no_usable_match_falls_back_to_all() {
        assert_eq!(order("lightning/charge", &OFFERS), [0, 1, 2, 3]);
        assert_eq!(order("*/*;q=0", &OFFERS), [0, 1, 2, 3]);
    }

    #[test]
    fn reads_qvalues_and_extra_params() {
        let accept = AcceptPayment::parse(&HeaderValue::from_static(" tempo / charge ; Q=0.25 ; foo=bar ,, ")).unwrap();
        assert_eq!(accept.entries[0].q, 250);
        for (s, q) in [("0", Some(0)), ("0.", Some(0)), ("0.001", Some(1)), ("1.000", Some(1000)), ("1", Some(1000))] {
            assert_eq!(qvalue(s), q, "{s}");
        }
        for s in ["1.001", "2", "0.0001", "-0", ".5", "0.x", ""] {
            assert_eq!(qvalue(s), None, "{s}");
        }
    }

    #[test]
    fn malformed_headers_are_none() {
        for bad in
            ["", " , ", "tempo", "tempo/charge;q", "tempo/charge;q=2", "tem po/charge", "a/b/c", "tempo/charge;=1"]
        {
            assert_eq!(AcceptPayment::parse(&HeaderValue::from_static(bad)), None, "{bad:?}");
        }
        let many = vec!["a/b"; MAX_ENTRIES + 1].join(",");
        assert_eq!(AcceptPayment::parse(&HeaderValue::from_str(&many).unwrap()), None);
    }
}
