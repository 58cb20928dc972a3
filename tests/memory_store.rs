//! [`MemoryStore`] against the shared store conformance suite.

mod common;

use tollgate::store::MemoryStore;

common::store_suite!(
    make: MemoryStore::new(),
    short_lease: MemoryStore::new().with_lease(common::store_suite::SHORT_LEASE),
    twin: |store: &MemoryStore| std::future::ready(store.clone()),
);
