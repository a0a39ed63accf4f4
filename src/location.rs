//! Where a store is: a file, or a PostgreSQL database named by a URL.

/// True when `location` names a PostgreSQL database (a `postgres://` or
/// `postgresql://` URL) rather than a store file, in every build: one
/// without the feature `postgres` refuses such a URL at open.
///
/// ```
/// assert!(sessionstore::is_postgres_url("postgres://bot@db/chat"));
/// assert!(sessionstore::is_postgres_url("postgresql://db/chat?sslmode=disable"));
/// assert!(!sessionstore::is_postgres_url("data/sessions.redb"));
/// ```
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// `location` as errors and logs show it: a PostgreSQL URL without its
/// password, anything else as it is.
///
/// ```
/// use sessionstore::redacted_location;
/// assert_eq!(
///     redacted_location("postgres://bot:secret@db:5432/chat?sslmode=disable"),
///     "postgres://bot:***@db:5432/chat?sslmode=disable"
/// );
/// assert_eq!(redacted_location("postgres://bot@db/chat"), "postgres://bot@db/chat");
/// assert_eq!(redacted_location("data/s.redb"), "data/s.redb");
/// ```
pub fn redacted_location(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://").filter(|_| is_postgres_url(location)) else {
        return location.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{tail}"),
            None => location.to_owned(),
        },
        None => location.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_location;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redacted_location("postgresql://ana:p@ss:w@rd@db/chat"),
            "postgresql://ana:***@db/chat"
        );
        assert_eq!(redacted_location("postgres://db/chat"), "postgres://db/chat");
        assert_eq!(redacted_location("file://ana:secret@x"), "file://ana:secret@x");
    }
}
