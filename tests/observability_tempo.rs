//! The `metrics` series of Tempo's chain work: a channel close is a settlement (its lag is
//! sampled, a failed one is a chain error), and a chain that cannot be reached is counted.
//! Observed through a recorder installed for the test's thread only.
#![cfg(all(feature = "client", feature = "metrics"))]

mod fake_chain;
mod money_support;

use fake_chain::{Fault, Kind};
use http::StatusCode;
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use money_support::*;

/// Counters as `name{labels} value`, histograms as `name{labels} samples=N`, sorted.
fn series(recorder: &DebuggingRecorder) -> Vec<String> {
    let mut lines: Vec<String> = recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            let value = match (kind, value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => n.to_string(),
                (MetricKind::Histogram, DebugValue::Histogram(values)) => format!("samples={}", values.len()),
                _ => return None,
            };
            Some(format!("{}{{{}}} {value}", key.name(), labels.join(",")))
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_close_is_a_settlement_and_an_unreachable_chain_is_a_chain_error() {
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let f = Fixture::v1(0);
            let (mut client, c) = f.open(&f.payer(1), 100_000).await;
            let (_, _) = f.stream_paying(10, &mut client, &c).await;
            let close = client.close(&c, client.cumulative()).unwrap();
            // The close transaction cannot be sent: a failed settlement, a 503.
            f.chain.fault_next(Kind::Send, Fault::Unavailable);
            assert_eq!(f.post(close.clone()).await.status(), StatusCode::SERVICE_UNAVAILABLE);
            // The retry settles.
            assert_eq!(f.post(close).await.status(), StatusCode::NO_CONTENT);
        });
    });
    let lines = series(&recorder);
    let find = |prefix: &str| lines.iter().find(|l| l.starts_with(prefix)).cloned();
    assert_eq!(
        find("tollgate_settlement_lag_seconds{method=tempo}").as_deref(),
        Some("tollgate_settlement_lag_seconds{method=tempo} samples=2"),
        "{lines:#?}"
    );
    assert_eq!(
        find("tollgate_chain_errors_total{op=settle}").as_deref(),
        Some("tollgate_chain_errors_total{op=settle} 1"),
        "{lines:#?}"
    );
    assert_eq!(
        find("tollgate_chain_errors_total{op=tempo_session}").as_deref(),
        Some("tollgate_chain_errors_total{op=tempo_session} 1"),
        "the 503: {lines:#?}"
    );
}
