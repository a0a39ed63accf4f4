//! Contexts, a session's and a user's: JSON objects merged shallowly.

use crate::error::Result;
use crate::json::{shallow_merge, JsonText};

/// `{**old, **update}` as Python writes it (see [`shallow_merge`]): the
/// context an update leaves, from the one stored (`None`: never set).
pub(crate) fn merged(old: Option<&str>, update: &JsonText) -> Result<JsonText> {
    shallow_merge(
        old.map(|text| JsonText::trusted(text.to_owned())).as_ref(),
        update,
    )
}
