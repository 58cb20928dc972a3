//! `GET /metrics`: the payment layer's series (the crate's `metrics` feature, see the
//! README's Observability table) in the Prometheus text format.
//!
//! The exporter only renders: the proxy serves the page on its own router, so the exporter
//! brings no HTTP server of its own. Its recorder is the process's global one, installed
//! by the first router built (a process that installed another recorder first serves an
//! empty page).

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The process's Prometheus recorder, installed on first use; `None` if another recorder
/// was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok()).as_ref()
}

/// The `GET /metrics` page.
pub async fn render() -> Response {
    let text = install()
        .map(|handle| {
            // Histograms drain on upkeep, which has no task of its own here: each scrape runs it.
            handle.run_upkeep();
            handle.render()
        })
        .unwrap_or_default();
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    response
}
