//! placeholder
/// placeholder
#[derive(Debug)]
pub struct OpenAiTokenMeter;
