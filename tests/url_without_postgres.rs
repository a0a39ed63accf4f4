//! A build without the `postgres` feature refuses a PostgreSQL URL, saying
//! why, instead of taking it for a file path (it made a folder named
//! `postgres:` and a store in it). Runs in a build without the feature
//! (`cargo test --test url_without_postgres`); `.ci/run` builds every
//! feature, where `tests/postgres_engine.rs` covers URLs.
#![cfg(not(feature = "postgres"))]

use sessionstore::{Error, SessionStore};

#[test]
fn a_url_is_refused_and_makes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    for url in ["postgres://bot@db/chat", "postgresql://bot@db/chat"] {
        let refused = SessionStore::open(url).unwrap_err();
        assert!(matches!(refused, Error::InvalidInput { .. }), "{refused}");
        assert!(refused.to_string().contains("`postgres` feature"), "{refused}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing was made"
    );
}
