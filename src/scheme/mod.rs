//! The "Payment" HTTP authentication scheme (placeholder; being written).
