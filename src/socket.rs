//! The local socket (feature `socket`, on by default): a store opened by
//! the library serves the HTTP API of [`crate::server`] on a Unix socket
//! beside its file, so that the CLI, cron jobs and other programs of the
//! same user reach the store while the process holding it runs.
//!
//! - Where: `<file>.sock`; when that path is longer than
//!   [`MAX_SOCKET_PATH`] bytes (the kernel's `sun_path` holds 108, 104 on
//!   some systems), `$XDG_RUNTIME_DIR/sessionstore-<hash>.sock` (or
//!   `/tmp/` when that variable is unset), `<hash>` naming the store's
//!   absolute path. [`SessionStore::socket_path`] gives it.
//! - Who: the file has mode 0600, and every connection's peer is checked
//!   (`SO_PEERCRED`): only the process's own user and root are served, with
//!   full rights (no tokens).
//! - When: from the open to the close. The store owns the file's lock, so
//!   a socket found there at the open is stale (its process died) and is
//!   replaced; the close stops accepting, lets requests in flight finish
//!   (10 s at most), then removes the file.
//!
//! It runs on one thread of its own (a tokio runtime of one worker, and a
//! blocking pool of at most 8 threads for the store's calls).

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::server::{router, ServerConfig};
use crate::SessionStore;

/// The longest socket path used beside the store; longer ones fall back
/// to a short name in the runtime folder.
pub const MAX_SOCKET_PATH: usize = 100;

/// How long the close waits for requests in flight.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

impl SessionStore {
    /// The Unix socket a store at `path` serves its API on while open (see
    /// `StoreOptions::serve_socket`): `<path>.sock`, or, when that is
    /// longer than [`MAX_SOCKET_PATH`] bytes,
    /// `$XDG_RUNTIME_DIR/sessionstore-<hash of the absolute path>.sock`
    /// (`/tmp/` without that variable). A client computes it from the same
    /// path.
    ///
    /// ```
    /// use sessionstore::SessionStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s.redb");
    /// let store = SessionStore::open(&path).unwrap();
    /// let socket = SessionStore::socket_path(&path);
    /// assert_eq!(socket, dir.path().canonicalize().unwrap().join("s.redb.sock"));
    /// assert!(socket.exists());
    /// drop(store);
    /// assert!(!socket.exists());
    /// ```
    pub fn socket_path(path: &Path) -> PathBuf {
        let absolute = absolute(path);
        let mut beside = absolute.clone().into_os_string();
        beside.push(".sock");
        if beside.len() <= MAX_SOCKET_PATH {
            return beside.into();
        }
        let digest = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
        let hash: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let folder = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute() && dir.is_dir())
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        folder.join(format!("sessionstore-{hash}.sock"))
    }
}

/// `path` made absolute, its folder's symbolic links resolved.
fn absolute(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let folder = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent.to_path_buf(),
        None => PathBuf::from("."),
    };
    let folder = folder.canonicalize().unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|cwd| cwd.join(&folder))
            .unwrap_or(folder)
    });
    folder.join(name)
}

/// The socket a store serves on; stopped and removed when dropped.
pub(crate) struct LocalSocket {
    path: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LocalSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSocket").field("path", &self.path).finish()
    }
}

/// Whether a peer of user `peer` may use the socket of a process of user
/// `own`: the same user, or root.
fn peer_allowed(peer: u32, own: u32) -> bool {
    peer == own || peer == 0
}

/// A Unix listener that hands on only the connections of allowed peers.
struct OwnerOnly {
    listener: tokio::net::UnixListener,
    own_uid: u32,
    /// A connection accepted before serving began.
    first: Option<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)>,
}

impl axum::serve::Listener for OwnerOnly {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        if let Some(first) = self.first.take() {
            return first;
        }
        loop {
            match self.listener.accept().await {
                Ok((stream, address)) => match stream.peer_cred() {
                    Ok(peer) if peer_allowed(peer.uid(), self.own_uid) => return (stream, address),
                    Ok(peer) => tracing::warn!(
                        uid = peer.uid(),
                        "refused a peer of another user on the local socket"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "refused a peer whose user is unknown on the local socket")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "accepting on the local socket");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl LocalSocket {
    /// Serves `store` (a handle that does not keep the socket alive) on
    /// the socket of the store's path, replacing a stale one.
    pub(crate) fn start(store: SessionStore) -> std::io::Result<LocalSocket> {
        let path = SessionStore::socket_path(store.path());
        match std::fs::symlink_metadata(&path) {
            Ok(found) if found.file_type().is_socket() => {
                tracing::info!(socket = %path.display(), "replacing the stale socket of a process that died");
                std::fs::remove_file(&path)?;
            }
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ))
            }
            Err(_) => {}
        }
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        let prepared = (|| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            listener.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(std::fs::metadata(&path)?.uid())
        })();
        let own_uid = match prepared {
            Ok(uid) => uid,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let socket = path.clone();
        let thread = std::thread::Builder::new()
            .name("sessionstore-socket".into())
            .spawn(move || {
                // Built here, not on the open's path: a runtime takes a
                // tenth of a millisecond to make, and most opens never
                // see a connection.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .max_blocking_threads(8)
                    .thread_name("sessionstore-socket")
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::warn!(error = %e, "the local socket cannot be served");
                        let _ = std::fs::remove_file(&socket);
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut listener = match tokio::net::UnixListener::from_std(listener) {
                        Ok(listener) => OwnerOnly {
                            listener,
                            own_uid,
                            first: None,
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "the local socket cannot be served");
                            return;
                        }
                    };
                    // The router is built at the first connection: most
                    // stores are closed without one, and an open stays cheap.
                    let mut closing = stopped.clone();
                    tokio::select! {
                        first = axum::serve::Listener::accept(&mut listener) => listener.first = Some(first),
                        _ = closing.wait_for(|stop| *stop) => return,
                    }
                    let app = router(store, ServerConfig::default());
                    let mut graceful = stopped.clone();
                    let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = graceful.wait_for(|stop| *stop).await;
                    });
                    let mut deadline = stopped;
                    let give_up = async move {
                        let _ = deadline.wait_for(|stop| *stop).await;
                        tokio::time::sleep(CLOSE_GRACE).await;
                    };
                    tokio::select! {
                        _ = serving => {}
                        () = give_up => tracing::warn!("requests on the local socket still running at the close were cut"),
                    }
                });
                runtime.shutdown_timeout(CLOSE_GRACE);
            });
        match thread {
            Ok(thread) => Ok(LocalSocket {
                path,
                stop,
                thread: Some(thread),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }
}

impl Drop for LocalSocket {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(socket = %self.path.display(), error = %e, "removing the local socket");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_user_and_root_are_served() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(!peer_allowed(1001, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(1000, 0));
    }

    #[test]
    fn a_path_too_long_for_a_socket_falls_back_to_a_short_one() {
        let long = Path::new("/").join("d".repeat(200)).join("s.redb");
        let socket = SessionStore::socket_path(&long);
        let name = socket.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("sessionstore-") && name.ends_with(".sock"),
            "{name}"
        );
        assert!(
            socket.as_os_str().len() <= MAX_SOCKET_PATH + 40,
            "{}",
            socket.display()
        );
        assert_eq!(
            socket,
            SessionStore::socket_path(&long),
            "the same path gives the same socket"
        );
        let other = Path::new("/").join("d".repeat(200)).join("t.redb");
        assert_ne!(socket, SessionStore::socket_path(&other));
    }
}
