//! A session's title in a list of sessions.

/// The old store's title, from the content of the session's first user
/// message: cut to 47 characters and `...` when over 50; `New
/// conversation` when it has none.
pub(crate) fn title(first_user_message: Option<&str>) -> String {
    match first_user_message {
        Some(content) if content.chars().count() > 50 => {
            let mut title: String = content.chars().take(47).collect();
            title.push_str("...");
            title
        }
        Some(content) => content.to_owned(),
        None => "New conversation".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::title;

    #[test]
    fn titles_cut_like_the_old_store() {
        assert_eq!(title(Some(&"x".repeat(50))), "x".repeat(50));
        assert_eq!(title(Some(&"é".repeat(51))), format!("{}...", "é".repeat(47)));
        assert_eq!(title(None), "New conversation");
    }
}
