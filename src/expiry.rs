//! The opt-in background expiry thread: every so often, the store's
//! `expire_old_sessions`, whatever the engine.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::SessionStore;

/// A running background expiry; stops (and waits for its thread) when dropped.
#[derive(Debug)]
pub struct BackgroundExpiry {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SessionStore {
    /// Every `every`, expires the sessions not updated for `max_age`, in a
    /// thread of its own, until the returned handle is dropped.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = sessionstore::SessionStore::open(dir.path().join("s.redb")).unwrap();
    /// use std::time::Duration;
    /// let id = store.create_session(None).unwrap();
    /// let expiry = store.spawn_background_expiry(Duration::ZERO, Duration::from_millis(10)).unwrap();
    /// while store.get_session(id).unwrap().is_some() {
    ///     std::thread::sleep(Duration::from_millis(5));
    /// }
    /// drop(expiry);
    /// ```
    pub fn spawn_background_expiry(&self, max_age: Duration, every: Duration) -> Result<BackgroundExpiry> {
        let (stop, stopped) = mpsc::channel::<()>();
        let store = self.clone();
        let thread = std::thread::Builder::new()
            .name("sessionstore-expiry".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    match store.expire_old_sessions(max_age) {
                        Ok(count) => tracing::info!(count, "background expiry expired sessions"),
                        Err(error) => tracing::warn!(%error, "background expiry failed"),
                    }
                }
            })
            .map_err(|e| Error::io("start the expiry thread for", self.path(), e))?;
        Ok(BackgroundExpiry {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for BackgroundExpiry {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
