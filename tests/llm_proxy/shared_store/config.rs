//! `[store]`: parsing, the default, settings that do not apply, and what error messages show.

use crate::proxy::store::{ProxyStore, StoreConfig, redacted};

fn parse(text: &str) -> Result<StoreConfig, toml::de::Error> {
    toml::from_str(text)
}

#[tokio::test]
async fn the_default_is_the_memory_store_and_settings_that_do_not_apply_are_refused() {
    let config = parse("").unwrap();
    assert_eq!(config.url, "memory");
    assert!(matches!(config.connect().await, Ok(ProxyStore::Memory(_))));
    let leased = parse("url = \"memory\"\nlease = 5").unwrap().connect().await.unwrap();
    assert_eq!(tollgate::store::ChannelStore::lease(&leased), std::time::Duration::from_secs(5));
    for wrong in ["prefix = \"p:\"", "schema = \"s\"", "lease = 0", "url = \"mysql://h/db\""] {
        let error = parse(wrong).unwrap().connect().await.expect_err(wrong);
        assert!(error.starts_with("[store]"), "{wrong}: {error}");
    }
    assert!(parse("urls = \"memory\"").is_err(), "unknown keys are refused");
}

#[test]
fn passwords_are_not_shown() {
    assert_eq!(redacted("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
    assert_eq!(redacted("redis://:pw@h"), "redis://:***@h");
    assert_eq!(redacted("redis://h:6379/0"), "redis://h:6379/0");
    assert_eq!(redacted("memory"), "memory");
}
