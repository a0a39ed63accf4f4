//! A session's title in a user's list, as the old store made it.

/// The title of a session without a user message.
pub(crate) const NO_TITLE: &str = "New conversation";

/// The title of a session whose first user message is `content`: cut to
/// 47 characters and `...` when over 50.
pub(crate) fn title_of(content: &str) -> String {
    if content.chars().count() > 50 {
        let mut title: String = content.chars().take(47).collect();
        title.push_str("...");
        title
    } else {
        content.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::title_of;

    #[test]
    fn titles_cut_like_the_old_store() {
        assert_eq!(title_of(&"x".repeat(50)), "x".repeat(50));
        assert_eq!(title_of(&"é".repeat(51)), format!("{}...", "é".repeat(47)));
    }
}
