use alloy::primitives::{Bytes, LogData};

use super::*;
use crate::method::tempo::PATH_USD;
use crate::method::tempo::charge::attribution_memo;

const REALM: &str = "api.example.com";
const CHALLENGE: &str = "challenge-1";

fn payee() -> Address {
    Address::repeat_byte(0x11)
}

fn split() -> Address {
    Address::repeat_byte(0x22)
}

fn bound() -> B256 {
    attribution_memo(REALM, None, CHALLENGE)
}

fn want(recipient: Address, amount: u64, memo: Option<B256>) -> Transfer {
    Transfer { recipient, amount: U256::from(amount), memo }
}

/// 1000 to the payee, bound to the challenge.
fn plain() -> Expected<'static> {
    Expected { transfers: vec![want(payee(), 1000, None)], binding: Some((REALM, CHALLENGE)) }
}

fn transfer(to: Address, amount: u64) -> Call {
    Call::new(PATH_USD, ITip20::transferCall { to, amount: U256::from(amount) }.abi_encode())
}

fn with_memo(to: Address, amount: u64, memo: B256) -> Call {
    Call::new(PATH_USD, ITip20::transferWithMemoCall { to, amount: U256::from(amount), memo }.abi_encode())
}

fn kind(result: Result<(), Mismatch>) -> PaymentErrorKind {
    result.unwrap_err().into_error().kind()
}

#[test]
fn a_bound_transfer_with_memo_pays() {
    assert_eq!(plain().check_calls(&[with_memo(payee(), 1000, bound())], PATH_USD), Ok(()));
}

#[test]
fn the_memo_must_be_bound_to_this_challenge_and_server() {
    let expected = plain();
    assert_eq!(expected.check_calls(&[transfer(payee(), 1000)], PATH_USD), Err(Mismatch::Unbound));
    for memo in [attribution_memo(REALM, None, "another"), attribution_memo("evil.com", None, CHALLENGE), B256::ZERO] {
        assert_eq!(expected.check_calls(&[with_memo(payee(), 1000, memo)], PATH_USD), Err(Mismatch::Unbound));
    }
    // A client id does not matter.
    let with_client = attribution_memo(REALM, Some("my-app"), CHALLENGE);
    assert_eq!(expected.check_calls(&[with_memo(payee(), 1000, with_client)], PATH_USD), Ok(()));
    assert_eq!(kind(expected.check_calls(&[transfer(payee(), 1000)], PATH_USD)), PaymentErrorKind::VerificationFailed);
}

#[test]
fn amount_and_recipient_must_be_exact() {
    let expected = plain();
    let short = expected.check_calls(&[with_memo(payee(), 999, bound())], PATH_USD);
    assert!(matches!(short, Err(Mismatch::Missing { short: true, .. })), "{short:?}");
    assert_eq!(kind(short), PaymentErrorKind::PaymentInsufficient);
    let over = expected.check_calls(&[with_memo(payee(), 1001, bound())], PATH_USD);
    assert!(matches!(over, Err(Mismatch::Missing { short: false, .. })), "{over:?}");
    let elsewhere = expected.check_calls(&[with_memo(split(), 1000, bound())], PATH_USD);
    assert_eq!(kind(elsewhere), PaymentErrorKind::VerificationFailed);
}

#[test]
fn nothing_but_the_transfers_asked_for() {
    let expected = plain();
    let pay = with_memo(payee(), 1000, bound());
    let approve = Call::new(PATH_USD, ITip20::approveCall { spender: split(), amount: U256::MAX }.abi_encode());
    assert_eq!(expected.check_calls(&[pay.clone(), approve], PATH_USD), Err(Mismatch::ForeignCall(1)));
    let twice = expected.check_calls(&[pay.clone(), transfer(split(), 1)], PATH_USD);
    assert_eq!(twice, Err(Mismatch::Count { expected: 1, found: 2 }));
    assert_eq!(expected.check_calls(&[], PATH_USD), Err(Mismatch::Count { expected: 1, found: 0 }));
    let other_token = Address::repeat_byte(0x20);
    assert_eq!(expected.check_calls(std::slice::from_ref(&pay), other_token), Err(Mismatch::ForeignCall(0)));
    let valued = Call { value: U256::from(1), ..pay.clone() };
    assert_eq!(expected.check_calls(&[valued], PATH_USD), Err(Mismatch::ForeignCall(0)));
    let garbage = Call::new(PATH_USD, Bytes::from_static(&[0xa9, 0x05, 0x9c, 0xbb, 0x01]));
    assert_eq!(expected.check_calls(&[garbage], PATH_USD), Err(Mismatch::ForeignCall(0)));
}

#[test]
fn splits_match_in_any_order_and_keep_their_memos() {
    let split_memo = B256::repeat_byte(0x5e);
    let expected = Expected {
        transfers: vec![want(payee(), 900, None), want(split(), 100, Some(split_memo))],
        binding: Some((REALM, CHALLENGE)),
    };
    let calls = [with_memo(split(), 100, split_memo), with_memo(payee(), 900, bound())];
    assert_eq!(expected.check_calls(&calls, PATH_USD), Ok(()));
    let wrong_split_memo = [with_memo(split(), 100, bound()), with_memo(payee(), 900, bound())];
    assert!(matches!(expected.check_calls(&wrong_split_memo, PATH_USD), Err(Mismatch::Missing { .. })));
}

#[test]
fn a_fixed_memo_replaces_the_binding() {
    let memo = B256::repeat_byte(0x77);
    let expected = Expected { transfers: vec![want(payee(), 1000, Some(memo))], binding: None };
    assert_eq!(expected.check_calls(&[with_memo(payee(), 1000, memo)], PATH_USD), Ok(()));
    assert!(matches!(expected.check_calls(&[transfer(payee(), 1000)], PATH_USD), Err(Mismatch::Missing { .. })));
    let any = Expected { transfers: vec![want(payee(), 1000, None)], binding: None };
    assert_eq!(any.check_calls(&[transfer(payee(), 1000)], PATH_USD), Ok(()));
}

fn log(token: Address, data: LogData) -> Log {
    Log { address: token, topics: data.topics().to_vec(), data: data.data.clone() }
}

fn transfer_log(from: Address, to: Address, amount: u64) -> Log {
    log(PATH_USD, ITip20::Transfer { from, to, amount: U256::from(amount) }.encode_log_data())
}

fn memo_log(from: Address, to: Address, amount: u64, memo: B256) -> Log {
    log(PATH_USD, ITip20::TransferWithMemo { from, to, amount: U256::from(amount), memo }.encode_log_data())
}

#[test]
fn logs_show_the_payment_from_the_sender() {
    let (payer, fees) = (Address::repeat_byte(0xaa), Address::repeat_byte(0xfe));
    let expected = plain();
    // A transferWithMemo's Transfer + TransferWithMemo pair, and the fee's transfer.
    let logs =
        [transfer_log(payer, payee(), 1000), memo_log(payer, payee(), 1000, bound()), transfer_log(payer, fees, 7)];
    assert_eq!(expected.check_logs(&logs, PATH_USD, payer), Ok(()));
    // A lone TransferWithMemo counts too.
    assert_eq!(expected.check_logs(&logs[1..], PATH_USD, payer), Ok(()));
    // Only the Transfer: no memo, so not bound.
    assert_eq!(expected.check_logs(&logs[..1], PATH_USD, payer), Err(Mismatch::Unbound));
    // From someone else, or in another token: not this payment.
    let stranger = Address::repeat_byte(0xbb);
    assert!(matches!(expected.check_logs(&logs, PATH_USD, stranger), Err(Mismatch::Missing { .. })));
    let other_token = Address::repeat_byte(0x20);
    let foreign: Vec<Log> = logs.iter().map(|l| Log { address: other_token, ..l.clone() }).collect();
    assert!(matches!(expected.check_logs(&foreign, PATH_USD, payer), Err(Mismatch::Missing { .. })));
}

#[test]
fn a_logged_pair_counts_once() {
    let payer = Address::repeat_byte(0xaa);
    // Two transfers of 1000 asked for; one transferWithMemo logged twice over is one payment.
    let expected = Expected {
        transfers: vec![want(payee(), 1000, None), want(payee(), 1000, None)],
        binding: Some((REALM, CHALLENGE)),
    };
    let one = [transfer_log(payer, payee(), 1000), memo_log(payer, payee(), 1000, bound())];
    assert!(matches!(expected.check_logs(&one, PATH_USD, payer), Err(Mismatch::Missing { .. })));
    let two = [one[0].clone(), one[1].clone(), transfer_log(payer, payee(), 1000)];
    assert_eq!(expected.check_logs(&two, PATH_USD, payer), Ok(()));
}

#[test]
fn a_bound_log_is_preferred_over_an_unbound_one() {
    let payer = Address::repeat_byte(0xaa);
    let logs =
        [transfer_log(payer, payee(), 1000), transfer_log(payer, split(), 5), memo_log(payer, payee(), 1000, bound())];
    assert_eq!(plain().check_logs(&logs, PATH_USD, payer), Ok(()));
}
