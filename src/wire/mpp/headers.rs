//! Header names of the scheme, and the cache rules its responses need.

use http::header::{CACHE_CONTROL, HeaderMap, HeaderName, HeaderValue};

/// `Payment-Receipt`: the receipt on a successful paid response.
pub const PAYMENT_RECEIPT: HeaderName = HeaderName::from_static("payment-receipt");

/// `Accept-Payment`: the client's preferred methods and intents (see
/// [`AcceptPayment`](super::AcceptPayment)).
pub const ACCEPT_PAYMENT: HeaderName = HeaderName::from_static("accept-payment");

/// `Payment-Authorization`: where draft -01 clients send the credential when the
/// challenge asks (`header="Payment-Authorization"`). Neither mppx nor mpp-rs does yet.
pub const PAYMENT_AUTHORIZATION: HeaderName = HeaderName::from_static("payment-authorization");

/// Makes the response `Cache-Control: private`, as a response carrying a receipt must be:
/// sets it when absent, appends `, private` to other directives, and leaves it alone when
/// `private` is already there. Several `Cache-Control` lines are merged into one.
pub fn set_private_cache(headers: &mut HeaderMap) {
    let values: Vec<&HeaderValue> = headers.get_all(CACHE_CONTROL).iter().collect();
    if values.is_empty() {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("private"));
        return;
    }
    // Only the bare directive: `private="field"` leaves the rest shareable.
    let has_private = values
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"private"));
    if has_private {
        return;
    }
    let mut merged = Vec::new();
    for value in values {
        merged.extend_from_slice(value.as_bytes());
        merged.extend_from_slice(b", ");
    }
    merged.extend_from_slice(b"private");
    let merged = HeaderValue::from_bytes(&merged).expect("joined header values stay valid");
    headers.insert(CACHE_CONTROL, merged);
}

/// Sets `Cache-Control: no-store`, replacing any other directives, as every 402 must.
pub fn set_no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_control(existing: &[&'static str]) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for v in existing {
            headers.append(CACHE_CONTROL, HeaderValue::from_static(v));
        }
        set_private_cache(&mut headers);
        headers.get_all(CACHE_CONTROL).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn private_cache_sets_appends_or_keeps() {
        assert_eq!(cache_control(&[]), ["private"]);
        assert_eq!(cache_control(&["max-age=60"]), ["max-age=60, private"]);
        assert_eq!(cache_control(&["no-cache", "max-age=0"]), ["no-cache, max-age=0, private"]);
        assert_eq!(cache_control(&["max-age=60, Private"]), ["max-age=60, Private"]);
        assert_eq!(cache_control(&["private=\"set-cookie\""]), ["private=\"set-cookie\", private"]);
    }

    #[test]
    fn no_store_replaces() {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
        set_no_store(&mut headers);
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert_eq!(PAYMENT_RECEIPT.as_str(), "payment-receipt");
        assert_eq!(ACCEPT_PAYMENT, "accept-payment");
        assert_eq!(PAYMENT_AUTHORIZATION, "payment-authorization");
    }
}
