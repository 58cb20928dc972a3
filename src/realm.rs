//! [`Realm`]: the protection space a layer's challenges name.

use std::fmt;

/// The protection space named in a layer's challenges (RFC 9110 §11.5), e.g. the API's
/// host. A type of its own so [`PaymentLayer::new`](crate::PaymentLayer::new) cannot be
/// called with the realm and the [`Secret`](crate::Secret) swapped.
///
/// ```
/// use tollgate::Realm;
///
/// let realm = Realm::from("api.example.com");
/// assert_eq!(realm.as_str(), "api.example.com");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Realm(String);

impl Realm {
    /// The realm as written in challenges.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

impl From<&str> for Realm {
    fn from(realm: &str) -> Self {
        Realm(realm.to_owned())
    }
}

impl From<String> for Realm {
    fn from(realm: String) -> Self {
        Realm(realm)
    }
}

impl From<&String> for Realm {
    fn from(realm: &String) -> Self {
        Realm(realm.clone())
    }
}

impl fmt::Display for Realm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
