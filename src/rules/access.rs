//! Who may see a session.

/// Who may see a session: anyone (the operator's API) or one user.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access<'a> {
    Any,
    Owner(&'a str),
}

impl Access<'_> {
    /// Whether a session owned by `owner` (`None`: anonymous, nobody's) is
    /// visible: any session to [`Access::Any`], only the user's own to
    /// [`Access::Owner`].
    pub(crate) fn allows(self, owner: Option<&str>) -> bool {
        match self {
            Access::Any => true,
            Access::Owner(user) => owner == Some(user),
        }
    }

    pub(crate) fn to_owned(self) -> OwnedAccess {
        match self {
            Access::Any => OwnedAccess::Any,
            Access::Owner(user) => OwnedAccess::Owner(user.to_owned()),
        }
    }
}

/// [`Access`] moved into a write job.
pub(crate) enum OwnedAccess {
    Any,
    Owner(String),
}

impl OwnedAccess {
    pub(crate) fn borrow(&self) -> Access<'_> {
        match self {
            OwnedAccess::Any => Access::Any,
            OwnedAccess::Owner(user) => Access::Owner(user),
        }
    }
}
