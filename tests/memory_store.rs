//! [`MemoryStore`] against the shared store conformance suite.

mod common;

use tollgate::store::MemoryStore;

common::store_suite!(MemoryStore::new());
