//! Two proxy instances on one store and one chain, behind the test's load balancer, paid by
//! the guide's mppx client on one v2 channel.

use tollgate::store::ChannelStore;

use super::backend::{Backend, connect};
use super::front::{self, Front};
use super::*;
use crate::demo::stack::{Stack, close_idle_v2};
use crate::support::config;

/// A stream on A runs out of headroom and asks for a voucher; the client's voucher POST is
/// routed to B, which accepts it into the shared store, and the stream on A resumes. Then B
/// closes the idle channel: the payee gains exactly the priced usage.
async fn a_voucher_posted_to_b_resumes_the_stream_on_a_and_b_closes_exactly(backend: Backend) {
    let Some(store) = store_for(backend, "split", None).await else { return };
    let (config, options) = (config(""), options());
    let stack = Stack::start_on(&config, options.clone(), connect(&store).await).await.unwrap();
    let (b, b_server) = stack.instance(&config, &options, connect(&store).await).await.unwrap();
    let front = Front::start(vec![stack.server.url(""), b_server.url("")], front::split()).await;
    let payee = stack.payee.address();
    let payee_before = stack.devnet.balance(payee).await.unwrap();

    let (child, mut lines) = client(&stack, &front, 2, &[("SEQUENTIAL", "2")]);
    let lines = finish(child, &mut lines).await;
    let completions: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "completion").collect();
    assert_eq!(completions.len(), 2, "{lines:?}");
    let mut priced_usage = 0;
    for completion in &completions {
        assert_complete(completion);
        priced_usage += priced(&stack, completion);
    }
    assert_eq!(front.content_to(1), 0, "every stream ran on A");
    assert!(front.needs_from(0) >= 2, "the streams on A paused for vouchers: {}", front.needs_from(0));
    assert!(front.management_to(1) > 0, "the vouchers went to B");
    assert_eq!(front.management_to(0), 0, "no voucher went to A");

    let channel = channel_of(lines.last().unwrap());
    let state = b.layer.store().load(&channel).await.unwrap().expect("B sees the channel");
    assert_eq!(state.spent.get(), priced_usage, "the store charged exactly the priced usage");
    assert!(state.reserved.is_zero() && state.spent <= state.accepted, "{state:?}");

    let report = close_idle_v2(&b).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.closed.len(), 1, "B closed the channel: {report:?}");
    let state = stack.proxy.layer.store().load(&channel).await.unwrap().unwrap();
    assert!(state.finalized, "A sees it closed");
    let gain = stack.devnet.balance(payee).await.unwrap() - payee_before;
    assert_eq!(gain, priced_usage, "payee gain = priced usage");
}
on_each_store!(a_voucher_posted_to_b_resumes_the_stream_on_a_and_b_closes_exactly);

const CONCURRENT: usize = 4;

/// One opening stream, then four at once on the same channel, every request (streams and
/// vouchers) alternating between A and B: all complete, the store charges exactly their
/// usage, never more than was paid, and B's close captures exactly that on chain.
async fn concurrent_streams_over_two_instances_on_one_channel_never_overspend(backend: Backend) {
    let Some(store) = store_for(backend, "concurrent", None).await else { return };
    let (config, options) = (config(""), options());
    let stack = Stack::start_on(&config, options.clone(), connect(&store).await).await.unwrap();
    let (b, b_server) = stack.instance(&config, &options, connect(&store).await).await.unwrap();
    let front = Front::start(vec![stack.server.url(""), b_server.url("")], front::round_robin(2)).await;
    let payee = stack.payee.address();
    let payee_before = stack.devnet.balance(payee).await.unwrap();

    let concurrent = CONCURRENT.to_string();
    let (child, mut lines) = client(&stack, &front, 3, &[("SEQUENTIAL", "1"), ("CONCURRENT", &concurrent)]);
    let lines = finish(child, &mut lines).await;
    let completions: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "completion").collect();
    assert_eq!(completions.len(), 1 + CONCURRENT, "{lines:?}");
    let refusals = front.refusals();
    assert!(refusals.is_empty(), "vouchers refused: {refusals:#?}");
    let mut priced_usage = 0;
    for completion in &completions {
        assert_complete(completion);
        priced_usage += priced(&stack, completion);
    }
    eprintln!(
        "content requests {} + {}, voucher POSTs {} + {}, need-voucher events {} + {}",
        front.content_to(0),
        front.content_to(1),
        front.management_to(0),
        front.management_to(1),
        front.needs_from(0),
        front.needs_from(1)
    );
    for instance in 0..2 {
        assert!(front.content_to(instance) > 0, "instance {instance} served streams");
        assert!(front.management_to(instance) > 0, "instance {instance} took vouchers");
    }

    let channel = channel_of(lines.last().unwrap());
    let state = b.layer.store().load(&channel).await.unwrap().unwrap();
    assert_eq!(state.spent.get(), priced_usage, "the store charged exactly the priced usage");
    assert!(state.spent <= state.accepted, "never spent beyond what was paid: {state:?}");
    assert!(state.reserved.is_zero(), "every hold released: {state:?}");

    let report = close_idle_v2(&b).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.closed.len(), 1, "{report:?}");
    let gain = stack.devnet.balance(payee).await.unwrap() - payee_before;
    assert_eq!(gain, priced_usage, "payee gain = priced usage");
}
on_each_store!(concurrent_streams_over_two_instances_on_one_channel_never_overspend);
