//! placeholder
/// placeholder
#[derive(Debug)]
pub struct RequestMeter;
