//! A session's title in a list of sessions.

/// The old store's title, from the content of the session's first user
/// message: cut to 47 characters and `...` when over 50; `New
/// conversation` when it has none.
pub(crate) fn title(first_user_message: Option<&str>) -> String {
    match first_user_message {
        // Over 50 characters: a 51st exists (looked for, not counted: a
        // message may run to megabytes).
        Some(content) if content.char_indices().nth(50).is_some() => {
            let cut = content.char_indices().nth(47).map_or(content.len(), |(at, _)| at);
            let mut title = String::with_capacity(cut + 3);
            title.push_str(&content[..cut]);
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
        assert_eq!(title(Some(&"é".repeat(50))), "é".repeat(50));
        assert_eq!(title(None), "New conversation");
    }
}
