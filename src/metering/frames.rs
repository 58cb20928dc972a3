//! The SSE events the layer writes itself (mpp-protocol §4.9 framing, byte for byte).

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::amount::Amount;
use crate::store::ChannelId;
use crate::wire::mpp::Receipt;

/// The keep-alive comment sent while a stream waits for a voucher.
pub(crate) const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NeedVoucher<'a> {
    channel_id: &'a str,
    required_cumulative: Amount,
    accepted_cumulative: Amount,
    deposit: Amount,
}

/// `event: payment-need-voucher` with all four keys as strings, in the reference order.
pub(crate) fn need_voucher(channel: &ChannelId, required: Amount, accepted: Amount, deposit: Amount) -> Bytes {
    let data = NeedVoucher {
        channel_id: channel.as_str(),
        required_cumulative: required,
        accepted_cumulative: accepted,
        deposit,
    };
    event("payment-need-voucher", &data)
}

/// `event: payment-receipt` carrying the session receipt JSON.
pub(crate) fn receipt(receipt: &Receipt) -> Bytes {
    event("payment-receipt", receipt)
}

/// `event: payment-receipt` carrying a settlement's proof.
pub(crate) fn proof(proof: &crate::method::Proof) -> Bytes {
    event("payment-receipt", proof.event())
}

fn event(name: &str, data: &impl Serialize) -> Bytes {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_slice(b"event: ");
    buf.put_slice(name.as_bytes());
    buf.put_slice(b"\ndata: ");
    // Serializing these plain structs cannot fail; JSON has no raw newlines to split.
    let mut writer = buf.writer();
    serde_json::to_writer(&mut writer, data).expect("event data serializes");
    let mut buf = writer.into_inner();
    buf.put_slice(b"\n\n");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_voucher_framing_is_exact() {
        let bytes = need_voucher(&ChannelId::new("0xAB"), Amount::new(300), Amount::new(100), Amount::new(1000));
        assert_eq!(
            &bytes[..],
            &b"event: payment-need-voucher\ndata: {\"channelId\":\"0xab\",\"requiredCumulative\":\"300\",\"acceptedCumulative\":\"100\",\"deposit\":\"1000\"}\n\n"[..]
        );
    }
}
