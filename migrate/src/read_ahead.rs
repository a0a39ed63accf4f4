//! Reading an input file ahead of a conversion.

use std::path::Path;

/// How much one read-ahead request asks for: Linux reads at most its
/// read-ahead window per request (8 MiB here), so the file is asked for
/// in steps.
const READ_AHEAD_STEP: u64 = 8 << 20;

/// Asks the system to bring `path` into its page cache now, in large
/// sequential reads, as far as half the memory available (Linux only; a
/// hint: nothing fails without it). The conversions' reads jump around
/// their input (a SQLite file's rows in session order and the check's
/// tree walks, a store's messages in id order): a part of the file not
/// cached would otherwise come from the disk a page at a time, each read
/// waited for.
fn read_ahead(path: &Path) {
    #[cfg(target_os = "linux")]
    {
        let available = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kib| kib.saturating_mul(1024));
        let Ok(file) = std::fs::File::open(path) else {
            return;
        };
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return;
        };
        let end = len.min(available / 2);
        let step = std::num::NonZeroU64::new(READ_AHEAD_STEP);
        let mut offset = 0;
        while offset < end {
            // Only a hint: an error changes nothing but speed.
            if rustix::fs::fadvise(&file, offset, step, rustix::fs::Advice::WillNeed).is_err() {
                return;
            }
            offset += READ_AHEAD_STEP;
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
}

/// [`read_ahead`] on a thread of its own, while the caller starts reading;
/// joined when dropped.
pub(crate) struct Background(Option<std::thread::JoinHandle<()>>);

impl Background {
    pub fn start(path: &Path) -> Self {
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || read_ahead(&path));
        // Only a hint: without the thread, the conversion reads as before.
        Background(thread.ok())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}
