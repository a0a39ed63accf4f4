//! The test database of the PostgreSQL engine's tests: a fresh schema per
//! test in the database `SESSIONSTORE_TEST_POSTGRES_URL` names (see
//! `.ci/postgres`), or a loud skip.
#![allow(dead_code)]

use std::io::Write;
use std::sync::Once;

use sessionstore::{SessionStore, Uuid};

/// A schema of its own in the test database, dropped at the end.
pub struct Schema {
    admin: String,
    /// The schema's name (also the `application_name` of its connections).
    pub name: String,
    /// The URL of the test database with this schema as its search path.
    pub url: String,
}

impl Schema {
    /// A fresh schema, or `None` (after saying so) when no database is
    /// configured.
    pub fn fresh() -> Option<Schema> {
        let Ok(admin) = std::env::var("SESSIONSTORE_TEST_POSTGRES_URL") else {
            let required = std::env::var("SESSIONSTORE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "SESSIONSTORE_REQUIRE_POSTGRES=1 but SESSIONSTORE_TEST_POSTGRES_URL is not set: \
                 run the tests under `.ci/postgres run -- ...`"
            );
            // Straight to stderr, past the test harness's capture, once.
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED PostgreSQL: SESSIONSTORE_TEST_POSTGRES_URL is not set; nothing \
                     of the PostgreSQL engine was tested (run `.ci/postgres run -- cargo test \
                     --features postgres --test postgres_engine`) ***\n"
                );
            });
            return None;
        };
        let name = format!("t_{}", Uuid::new_v4().simple());
        admin_client(&admin)
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap();
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-csearch_path%3D{name}&application_name={name}");
        Some(Schema { admin, name, url })
    }

    /// A store on the schema (the schema is created at its first open).
    pub fn store(&self) -> SessionStore {
        SessionStore::open(&self.url).unwrap()
    }

    /// A plain client on the schema, for SQL the library does not run.
    pub fn sql(&self) -> postgres::Client {
        admin_client(&self.url)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = admin_client(&self.admin).batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
    }
}

/// A plain client of `url`.
pub fn admin_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}
