//! Networks: CAIP-2 ids (`eip155:<chain id>`, v2) and the names v1 uses (`base`).

use std::borrow::Cow;

/// v1 network names and their EVM chain ids.
const NAMES: [(&str, u64); 10] = [
    ("ethereum", 1),
    ("base", 8453),
    ("base-sepolia", 84532),
    ("avalanche", 43114),
    ("avalanche-fuji", 43113),
    ("polygon", 137),
    ("polygon-amoy", 80002),
    ("sei", 1329),
    ("sei-testnet", 1328),
    ("iotex", 4689),
];

/// The CAIP-2 id of an EVM chain: `eip155:<id>`.
pub fn caip2(chain_id: u64) -> String {
    format!("eip155:{chain_id}")
}

/// The EVM chain id a network names, as a CAIP-2 id or a v1 name.
///
/// ```
/// use tollgate::wire::x402::network::chain_id;
/// assert_eq!(chain_id("eip155:8453"), Some(8453));
/// assert_eq!(chain_id("base"), Some(8453));
/// assert_eq!(chain_id("eip155:08453"), None);
/// assert_eq!(chain_id("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"), None);
/// ```
pub fn chain_id(network: &str) -> Option<u64> {
    if let Some(id) = network.strip_prefix("eip155:") {
        let canonical = !id.is_empty() && (id == "0" || !id.starts_with('0'));
        return canonical.then(|| id.parse().ok()).flatten().filter(|_| id.bytes().all(|b| b.is_ascii_digit()));
    }
    NAMES.iter().find(|(name, _)| *name == network).map(|&(_, id)| id)
}

/// The v1 name of an EVM chain, if it has one.
pub fn v1_name(chain_id: u64) -> Option<&'static str> {
    NAMES.iter().find(|(_, id)| *id == chain_id).map(|&(name, _)| name)
}

/// The CAIP-2 form of a network (a v1 name translated, anything else as it is).
pub fn normalize(network: &str) -> Cow<'_, str> {
    match (network.starts_with("eip155:"), chain_id(network)) {
        (false, Some(id)) => Cow::Owned(caip2(id)),
        _ => Cow::Borrowed(network),
    }
}

/// Whether two networks are the same, whichever form each is written in.
pub fn same(a: &str, b: &str) -> bool {
    a == b || normalize(a) == normalize(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_caip2_ids_meet() {
        assert!(same("base", "eip155:8453"));
        assert!(same("base-sepolia", "eip155:84532"));
        assert!(!same("base", "eip155:84532"));
        assert!(same("solana:x", "solana:x"));
        assert_eq!(v1_name(8453), Some("base"));
        assert_eq!(normalize("eip155:4217"), "eip155:4217");
        assert_eq!(chain_id("eip155:"), None);
        assert_eq!(chain_id("eip155:-1"), None);
        assert_eq!(chain_id("eip155:99999999999999999999999"), None);
    }
}
