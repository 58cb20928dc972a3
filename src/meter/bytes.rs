//! placeholder
/// placeholder
#[derive(Debug)]
pub struct ByteMeter;
