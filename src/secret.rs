//! [`Secret`]: the HMAC key that binds a layer's challenges.

use std::fmt;

/// The key a layer binds its challenge ids with (HMAC-SHA256). Keep it private and the same
/// on every instance; make it at least [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN) random
/// bytes.
///
/// A type of its own, with no conversion from a string, so
/// [`PaymentLayer::new`](crate::PaymentLayer::new) cannot be called with the realm and the
/// secret swapped; its `Debug` never shows the key.
///
/// ```
/// use tollgate::Secret;
///
/// let secret = Secret::new("a long random secret of 32+ bytes");
/// assert_eq!(format!("{secret:?}"), "Secret(33 bytes)");
/// ```
///
/// Swapped, the call does not compile:
///
/// ```compile_fail
/// use tollgate::store::MemoryStore;
/// use tollgate::{PaymentLayer, Secret};
///
/// let secret = Secret::new("a long random secret of 32+ bytes");
/// let layer = PaymentLayer::new((), MemoryStore::new(), secret, "api.example.com");
/// ```
///
/// ```
/// # use tollgate::store::MemoryStore;
/// # use tollgate::{PaymentLayer, Secret};
/// # let secret = Secret::new("a long random secret of 32+ bytes");
/// let layer = PaymentLayer::new((), MemoryStore::new(), "api.example.com", secret);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret of these bytes (read from the environment or a secret store, say).
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Secret(bytes.as_ref().to_vec())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}
