//! placeholder
/// placeholder
#[derive(Debug)]
pub struct SseScanner;
/// placeholder
#[derive(Debug)]
pub struct SseField;
/// placeholder
pub fn sse_fields() {}
