//! Money and usage: [`Amount`] in base units, [`Usage`] counted by meters, and the
//! [`Price`] that turns one into the other.

use std::fmt;
use std::str::FromStr;

/// An amount of a token in its base units (for TIP-20 and USDC, 10⁻⁶ of a dollar).
///
/// Amounts travel as decimal strings on the wire; arithmetic is checked, so an overflow is
/// an error, never a wrap-around.
///
/// See the [crate docs](crate) for an example.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u128);

impl Amount {
    /// Zero base units.
    pub const ZERO: Amount = Amount(0);

    /// An amount of `base_units`.
    pub const fn new(base_units: u128) -> Self {
        Amount(base_units)
    }

    /// The amount in base units.
    pub const fn get(self) -> u128 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` when `other` is larger.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// `self - other`, or zero when `other` is larger.
    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    /// `self + other`, capped at the largest amount.
    pub fn saturating_add(self, other: Amount) -> Amount {
        Amount(self.0.saturating_add(other.0))
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The error returned when a string is not a decimal amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseAmountError(());

impl fmt::Display for ParseAmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("amount must be 1 to 39 decimal digits")
    }
}

impl std::error::Error for ParseAmountError {}

impl FromStr for Amount {
    type Err = ParseAmountError;

    /// Parses a plain decimal string: digits only, no sign, no exponent, no spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseAmountError(()));
        }
        s.parse::<u128>().map(Amount).map_err(|_| ParseAmountError(()))
    }
}

impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a response used, as counted by a [`Meter`](crate::meter::Meter).
///
/// Two counters because LLM providers price prompt (input) and completion (output) tokens
/// apart; meters of one kind of unit (requests, bytes, events) count `output` only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input units (prompt tokens).
    pub input: u64,
    /// Output units (completion tokens, events, bytes, requests).
    pub output: u64,
}

impl Usage {
    /// Usage of `output` units and no input.
    pub const fn output(output: u64) -> Self {
        Usage { input: 0, output }
    }

    /// All units counted, input and output.
    pub const fn total(self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// A price per unit: `amount` base units for every `per` units, rounded up.
///
/// Rounding happens once, on a response's whole usage, so a token priced at 0.15 base units
/// (`Rate::new(Amount::new(15), 100)`) costs exactly what it should over a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    amount: Amount,
    per: u64,
}

impl Rate {
    /// Free.
    pub const FREE: Rate = Rate { amount: Amount::ZERO, per: 1 };

    /// `amount` for every `per` units. `per` of zero is taken as one.
    pub const fn new(amount: Amount, per: u64) -> Self {
        Rate { amount, per: if per == 0 { 1 } else { per } }
    }

    /// `amount` for each unit.
    pub const fn per_unit(amount: Amount) -> Self {
        Rate::new(amount, 1)
    }

    /// The amount for `per()` units.
    pub const fn amount(self) -> Amount {
        self.amount
    }

    /// How many units `amount()` buys.
    pub const fn per(self) -> u64 {
        self.per
    }

    /// The cost of `units`, rounded up to a whole base unit; `None` on overflow.
    pub fn cost(self, units: u64) -> Option<Amount> {
        let total = self.amount.0.checked_mul(u128::from(units))?;
        Some(Amount(total.div_ceil(u128::from(self.per))))
    }

    /// The price of one unit, rounded up (what a challenge advertises as its `amount`).
    pub fn unit_price(self) -> Amount {
        Amount(self.amount.0.div_ceil(u128::from(self.per)))
    }
}

/// What one unit of a response costs: input and output priced apart, and the name of the
/// unit (`"request"`, `"llm_token"`, `"byte"`, `"event"`, …) that challenges advertise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Price {
    /// Price of input units (prompt tokens).
    pub input: Rate,
    /// Price of output units.
    pub output: Rate,
    /// The unit's name, as sent in a challenge's `unitType`.
    pub unit: &'static str,
}

impl Price {
    /// `amount` per request.
    pub const fn per_request(amount: Amount) -> Self {
        Price { input: Rate::FREE, output: Rate::per_unit(amount), unit: "request" }
    }

    /// `output` per unit named `unit`, input free.
    pub const fn per_unit(unit: &'static str, output: Rate) -> Self {
        Price { input: Rate::FREE, output, unit }
    }

    /// Token pricing with input and output rates.
    pub const fn tokens(input: Rate, output: Rate) -> Self {
        Price { input, output, unit: "llm_token" }
    }

    /// The cost of `usage`; `None` on overflow.
    pub fn cost(&self, usage: Usage) -> Option<Amount> {
        self.input.cost(usage.input)?.checked_add(self.output.cost(usage.output)?)
    }
}

/// The price of one request, as the layer's pricing decided it before anyone paid.
///
/// `upfront` is the usage known before the response starts (for an LLM proxy, the estimated
/// prompt tokens); it must be covered before the inner service is called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// Per-unit price.
    pub price: Price,
    /// Usage known before the response (estimated prompt tokens, one request, …).
    pub upfront: Usage,
    /// The most output units the response can produce, when the request caps it (an LLM
    /// request's `max_completion_tokens` / `max_tokens`). A meter may ask for the cost of
    /// output it cannot see (hidden reasoning) up to this cap before content goes out.
    pub max_output: Option<u64>,
}

impl Quote {
    /// A quote with no upfront usage.
    pub const fn new(price: Price) -> Self {
        Quote { price, upfront: Usage { input: 0, output: 0 }, max_output: None }
    }

    /// Sets the upfront usage.
    pub const fn upfront(mut self, upfront: Usage) -> Self {
        self.upfront = upfront;
        self
    }

    /// Sets the most output units the response can produce (see the [`max_output`](Quote#structfield.max_output) field).
    pub const fn max_output(mut self, units: u64) -> Self {
        self.max_output = Some(units);
        self
    }

    /// The most this request can cost: its upfront input and
    /// [`max_output`](Quote#structfield.max_output) output units (or the upfront output, if
    /// larger: the meter's count replaces the upfront, it does not add to it). `None` when
    /// the request does not cap its output (or the cost overflows): such a request has no
    /// maximum a one-shot payment could cover.
    pub fn maximum(&self) -> Option<Amount> {
        let most = Usage { input: self.upfront.input, output: self.upfront.output.max(self.max_output?) };
        self.price.cost(most)
    }

    /// The least a client must have paid before the inner service runs: the upfront usage,
    /// or one output unit when there is none.
    pub fn minimum(&self) -> Amount {
        let upfront = self.price.cost(self.upfront).unwrap_or(Amount(u128::MAX));
        if upfront.is_zero() { self.price.output.unit_price() } else { upfront }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_has_a_maximum_only_when_its_output_is_capped() {
        let price = Price::tokens(Rate::per_unit(Amount::new(10)), Rate::per_unit(Amount::new(10)));
        assert_eq!(Quote::new(price.clone()).maximum(), None);
        assert_eq!(Quote::new(price.clone()).max_output(5).maximum(), Some(Amount::new(50)));
        let prompt = Quote::new(price.clone()).upfront(Usage { input: 3, output: 0 }).max_output(5);
        assert_eq!(prompt.maximum(), Some(Amount::new(80)));
        let whole = Quote::new(price).upfront(Usage { input: 3, output: 5 }).max_output(5);
        assert_eq!(whole.maximum(), Some(Amount::new(80)), "the upfront output is not counted twice");
    }

    #[test]
    fn amounts_parse_strictly() {
        assert_eq!("0".parse::<Amount>(), Ok(Amount::ZERO));
        assert_eq!("1000000".parse::<Amount>(), Ok(Amount::new(1_000_000)));
        for bad in ["", "-1", "+1", "1e6", " 1", "1.0", "0x10", "1234567890123456789012345678901234567890"] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn amounts_serialize_as_strings() {
        let json = serde_json::to_string(&Amount::new(25)).unwrap();
        assert_eq!(json, "\"25\"");
        let back: Amount = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Amount::new(25));
        assert!(serde_json::from_str::<Amount>("25").is_err());
    }

    #[test]
    fn fractional_rates_round_up_once_over_the_whole_usage() {
        let rate = Rate::new(Amount::new(15), 100); // 0.15 per unit
        assert_eq!(rate.cost(1), Some(Amount::new(1)));
        assert_eq!(rate.cost(100), Some(Amount::new(15)));
        assert_eq!(rate.cost(101), Some(Amount::new(16)));
        assert_eq!(rate.unit_price(), Amount::new(1));
    }

    #[test]
    fn price_adds_input_and_output() {
        let price = Price::tokens(Rate::per_unit(Amount::new(2)), Rate::per_unit(Amount::new(5)));
        assert_eq!(price.cost(Usage { input: 10, output: 3 }), Some(Amount::new(35)));
        let huge = Price::per_request(Amount::new(u128::MAX));
        assert_eq!(huge.cost(Usage::output(2)), None);
    }

    #[test]
    fn quote_minimum_is_upfront_or_one_unit() {
        let price = Price::tokens(Rate::per_unit(Amount::new(2)), Rate::per_unit(Amount::new(5)));
        assert_eq!(Quote::new(price.clone()).minimum(), Amount::new(5));
        let q = Quote::new(price).upfront(Usage { input: 4, output: 0 });
        assert_eq!(q.minimum(), Amount::new(8));
    }
}
