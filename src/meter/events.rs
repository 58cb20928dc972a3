//! placeholder
/// placeholder
#[derive(Debug)]
pub struct EventMeter;
