//! Bearer tokens: a file of their SHA-256 hashes, each for an admin or for
//! one user, and the middleware that turns a request's token into the
//! [`Caller`] every handler acts as.
//!
//! The tokens file has one token a line, `<sha256 hex> admin` or
//! `<sha256 hex> user <user id>`; blank lines and lines starting with `#`
//! are skipped. Only hashes are stored: a token is shown once, by
//! [`Tokens::add`] (`sessionstore token add`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::errors::ApiError;
use crate::{Error, Result};

/// Who a request acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Every session and the admin routes.
    Admin,
    /// Only this user's sessions: another user's session answers as a
    /// missing one, and sessions created belong to this user.
    User(String),
}

/// The bearer tokens a server accepts, as SHA-256 hashes.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Caller)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// Reads a tokens file. A line that is not a hash and a role is
    /// refused with [`Error::InvalidInput`] naming its line number.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read the tokens file", path, e))?;
        Self::parse(&text).map_err(|why| Error::invalid("tokens file", format!("{}: {why}", path.display())))
    }

    /// Parses the text of a tokens file; the error says which line and why.
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("line {}: {why}", number + 1);
            let (hash, role) = line
                .split_once(' ')
                .ok_or_else(|| bad("expected `<sha256 hex> admin|user <id>`"))?;
            let hash = parse_hash(hash).ok_or_else(|| bad("the hash is not 64 hex digits"))?;
            let caller = match role.trim_start().split_once(' ') {
                None if role.trim() == "admin" => Caller::Admin,
                Some(("user", user)) if !user.is_empty() => Caller::User(user.to_owned()),
                _ => return Err(bad("the role is neither `admin` nor `user <id>`")),
            };
            entries.push((hash, caller));
        }
        Ok(Tokens { entries })
    }

    /// Whether no token is accepted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Who `token` acts as, if it is one of these. Compares its hash with
    /// every entry in constant time, all of them whatever matches.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let presented = hash(token);
        let mut found = None;
        for (stored, caller) in &self.entries {
            if bool::from(stored.ct_eq(&presented)) {
                found = Some(caller.clone());
            }
        }
        found
    }

    /// Makes a new random token for `caller`, appends its hash to the
    /// tokens file at `path` (created with mode 0600 when missing), and
    /// returns the token: the only time it is seen.
    pub fn add(path: &Path, caller: &Caller) -> Result<String> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| {
            Error::io(
                "draw a random token for",
                path,
                std::io::Error::other(e.to_string()),
            )
        })?;
        let token = format!("sst_{}", hex(&secret));
        let role = match caller {
            Caller::Admin => "admin".to_owned(),
            Caller::User(user) if !user.is_empty() && !user.contains('\n') => format!("user {user}"),
            Caller::User(_) => return Err(Error::invalid("user", "a user id is one line, not empty")),
        };
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .map_err(|e| Error::io("open the tokens file", path, e))?;
        writeln!(file, "{} {role}", hex(&hash(&token)))
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("write the tokens file", path, e))?;
        Ok(token)
    }
}

/// The middleware: without tokens every request is [`Caller::Admin`] (the
/// server then listens on loopback or on the owner-only socket); with
/// tokens a request needs `Authorization: Bearer <token>` (else 401).
pub(crate) async fn authenticate(
    State(tokens): State<Option<Arc<Tokens>>>,
    mut request: Request,
    next: Next,
) -> std::result::Result<Response, ApiError> {
    let caller = match tokens.as_deref() {
        None => Caller::Admin,
        Some(tokens) => {
            let header = request
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .ok_or_else(|| ApiError::unauthorized("this server needs `Authorization: Bearer <token>`"))?;
            let token = header
                .to_str()
                .ok()
                .and_then(|value| value.strip_prefix("Bearer "))
                .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer <token>`"))?;
            tokens
                .caller(token.trim())
                .ok_or_else(|| ApiError::unauthorized("the token is not valid"))?
        }
    };
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> std::result::Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("no caller"))
    }
}

impl Caller {
    /// Refuses (403) a caller that is not an admin.
    pub fn admin(&self) -> std::result::Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::User(_) => Err(ApiError::forbidden("this route needs an admin token")),
        }
    }

    /// Refuses (403) a user token acting on another user's data.
    pub fn may_act_for(&self, user: &str) -> std::result::Result<(), ApiError> {
        match self {
            Caller::User(own) if own != user => {
                Err(ApiError::forbidden("this token is bound to another user"))
            }
            _ => Ok(()),
        }
    }
}
