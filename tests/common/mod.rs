//! Helpers shared by the integration tests. Each test binary compiles this module anew and
//! uses only part of it.

pub mod faulty_store;
pub mod store_suite;

#[allow(unused_imports)] // only the fault-injection tests use it
pub use faulty_store::{Fault, FaultyStore, Op};
#[allow(unused_imports)] // only the store test binaries invoke it
pub(crate) use store_suite::store_suite;
