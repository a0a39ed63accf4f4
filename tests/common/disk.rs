//! A simulated disk for the store's [`StorageFactory`]: every file the store
//! opens lives in memory, with the bytes written kept apart from the bytes
//! synced, so that a test can cut the power at any sync (keeping none, all,
//! or a random part of what was not synced, torn at sector bounds), or make
//! the Nth write, set_len or sync fail with EIO or ENOSPC.

use sessionstore::redb_engine::{FileRole, StorageBackend, StorageFactory};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Rng;

/// Linux's errno values for the errors injected.
pub const EIO: i32 = 5;
pub const ENOSPC: i32 = 28;

/// What survives of the unsynced writes when the power is cut.
#[derive(Clone, Copy, Debug)]
pub enum Keep {
    /// Only what was synced.
    Nothing,
    /// Everything written (what a process kill keeps).
    Everything,
    /// Each unsynced write or set_len kept or lost at random, a kept write
    /// sometimes torn to a prefix of whole 512-byte sectors.
    Part(u64),
}

/// The mutating calls of a [`StorageBackend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Write,
    /// A set_len that makes the file longer (or keeps its length).
    Grow,
    /// A set_len that makes the file shorter.
    Shrink,
    Sync,
}

/// Which mutating call fails, and how.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// The index (from 0) among all writes, set_lens and syncs of the disk.
    pub at: u64,
    /// The errno returned.
    pub errno: i32,
    /// Every call from `at` on fails, not just that one.
    pub forever: bool,
}

#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

const PAGE: u64 = 4096;

/// The bytes of a simulated file, by 4 KiB page, pages of zeros left out
/// (the store's journal is 32 MiB of mostly zeros): cheap to copy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseFile {
    len: u64,
    pages: BTreeMap<u64, Arc<Vec<u8>>>,
}

impl SparseFile {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut file = SparseFile::default();
        file.write(0, bytes);
        file
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![0; self.len as usize];
        self.read(0, &mut bytes);
        bytes
    }

    /// Fills `out` from `offset`; false when that goes past the end.
    fn read(&self, offset: u64, out: &mut [u8]) -> bool {
        if offset + out.len() as u64 > self.len {
            return false;
        }
        out.fill(0);
        for (&index, page) in self
            .pages
            .range(offset / PAGE..=(offset + out.len() as u64) / PAGE)
        {
            copy_overlap(index * PAGE, page, offset, out);
        }
        true
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        self.len = self.len.max(end);
        let mut index = offset / PAGE;
        while index * PAGE < end {
            let start = index * PAGE;
            let from = offset.max(start);
            let to = end.min(start + PAGE);
            let chunk = &data[(from - offset) as usize..(to - offset) as usize];
            if !self.pages.contains_key(&index) && chunk.iter().all(|&b| b == 0) {
                index += 1;
                continue;
            }
            let page = self
                .pages
                .entry(index)
                .or_insert_with(|| Arc::new(vec![0; PAGE as usize]));
            let page_bytes = Arc::make_mut(page);
            page_bytes[(from - start) as usize..(to - start) as usize].copy_from_slice(chunk);
            if page_bytes.iter().all(|&b| b == 0) {
                self.pages.remove(&index);
            }
            index += 1;
        }
    }

    fn set_len(&mut self, len: u64) {
        if len < self.len {
            let tail = self.pages.split_off(&len.div_ceil(PAGE));
            drop(tail);
            let index = len / PAGE;
            if let Some(page) = self.pages.get_mut(&index) {
                Arc::make_mut(page)[(len - index * PAGE) as usize..].fill(0);
            }
        }
        self.len = len;
    }
}

/// Copies the part of `page` (at `page_start`) that overlaps `out` (at `offset`).
fn copy_overlap(page_start: u64, page: &[u8], offset: u64, out: &mut [u8]) {
    let from = offset.max(page_start);
    let to = (offset + out.len() as u64).min(page_start + page.len() as u64);
    if from < to {
        out[(from - offset) as usize..(to - offset) as usize]
            .copy_from_slice(&page[(from - page_start) as usize..(to - page_start) as usize]);
    }
}

/// The files of a disk, by path.
pub type Files = BTreeMap<PathBuf, SparseFile>;

#[derive(Clone, Debug, Default)]
struct SimFile {
    durable: SparseFile,
    current: SparseFile,
    pending: Vec<Pending>,
}

fn apply(file: &mut SparseFile, op: &Pending) {
    match op {
        Pending::Write { offset, data } => file.write(*offset, data),
        Pending::SetLen(len) => file.set_len(*len),
    }
}

#[derive(Debug, Default)]
struct DiskState {
    files: BTreeMap<PathBuf, SimFile>,
    /// Writes, set_lens and syncs so far.
    mutations: u64,
    /// Every mutating call that took effect, with the role of its file.
    calls: Vec<(FileRole, Call)>,
    fault: Option<Fault>,
    faults_injected: u64,
    /// The kind of call the first injected fault failed.
    first_fault: Option<Call>,
    crash_at_sync: Option<(u64, Keep)>,
    /// The files as found after the power cut, once it happened.
    crashed: Option<Files>,
    /// Bytes read so far from the files of each role.
    read: HashMap<FileRole, u64>,
}

impl DiskState {
    /// Syncs that took effect, of the files of `role` or of every file.
    fn syncs(&self, role: Option<FileRole>) -> u64 {
        let of = |(r, call): &&(FileRole, Call)| *call == Call::Sync && role.is_none_or(|role| role == *r);
        self.calls.iter().filter(of).count() as u64
    }

    /// Counts a mutating call; the injected error when it is to fail.
    fn mutate(&mut self, call: Call) -> io::Result<()> {
        if self.crashed.is_some() {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let index = self.mutations;
        self.mutations += 1;
        match self.fault {
            Some(f) if index == f.at || (f.forever && index > f.at) => {
                self.faults_injected += 1;
                self.first_fault.get_or_insert(call);
                Err(io::Error::from_raw_os_error(f.errno))
            }
            _ => Ok(()),
        }
    }

    fn cut_power(&mut self, keep: Keep) {
        let mut rng = Rng::new(match keep {
            Keep::Part(seed) => seed,
            _ => 0,
        });
        let images = self
            .files
            .iter()
            .map(|(path, file)| {
                let mut image = file.durable.clone();
                for op in &file.pending {
                    match keep {
                        Keep::Nothing => break,
                        Keep::Everything => apply(&mut image, op),
                        Keep::Part(_) if rng.chance(50) => {}
                        Keep::Part(_) => match op {
                            Pending::Write { offset, data } if rng.chance(30) => {
                                let sectors = data.len() / 512;
                                let cut = rng.below(sectors as u64 + 1) as usize * 512;
                                let torn = Pending::Write {
                                    offset: *offset,
                                    data: data[..cut.min(data.len())].to_vec(),
                                };
                                apply(&mut image, &torn);
                            }
                            op => apply(&mut image, op),
                        },
                    }
                }
                (path.clone(), image)
            })
            .collect();
        self.crashed = Some(images);
    }
}

/// The simulated disk; clones share it. Use it as
/// `StoreOptions { redb: RedbOptions { storage: Arc::new(disk.clone()), .. }, .. }`.
#[derive(Clone, Debug, Default)]
pub struct SimDisk(Arc<Mutex<DiskState>>);

impl SimDisk {
    /// A disk holding these files, all synced.
    pub fn with_files(files: Files) -> Self {
        let disk = SimDisk::default();
        disk.lock().files = files
            .into_iter()
            .map(|(path, bytes)| {
                let file = SimFile {
                    durable: bytes.clone(),
                    current: bytes,
                    pending: Vec::new(),
                };
                (path, file)
            })
            .collect();
        disk
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // A panic elsewhere must not hide behind a poisoned lock here.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fails calls as `fault` says.
    pub fn inject(&self, fault: Fault) {
        self.lock().fault = Some(fault);
    }

    /// Cuts the power when sync number `k` (from 0) is called, before it
    /// takes effect; every call after that fails with EIO.
    pub fn crash_at_sync(&self, k: u64, keep: Keep) {
        self.lock().crash_at_sync = Some((k, keep));
    }

    /// The files as the power cut left them, if it happened.
    pub fn crashed(&self) -> Option<Files> {
        self.lock().crashed.clone()
    }

    /// The files as written so far (what survives without a power cut).
    pub fn written(&self) -> Files {
        let state = self.lock();
        state
            .files
            .iter()
            .map(|(p, f)| (p.clone(), f.current.clone()))
            .collect()
    }

    /// The files as synced so far (what a power cut now would leave).
    pub fn synced(&self) -> Files {
        let state = self.lock();
        state
            .files
            .iter()
            .map(|(p, f)| (p.clone(), f.durable.clone()))
            .collect()
    }

    /// Writes, set_lens and syncs so far.
    pub fn mutations(&self) -> u64 {
        self.lock().mutations
    }

    /// Syncs that took effect.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs(None)
    }

    /// Syncs of the store's journal that took effect.
    pub fn journal_syncs(&self) -> u64 {
        self.lock().syncs(Some(FileRole::Journal))
    }

    /// The writes, set_lens and syncs that took effect on the files of
    /// `role`, in order.
    pub fn calls(&self, role: FileRole) -> Vec<Call> {
        let state = self.lock();
        state
            .calls
            .iter()
            .filter(|(r, _)| *r == role)
            .map(|(_, c)| *c)
            .collect()
    }

    pub fn faults_injected(&self) -> u64 {
        self.lock().faults_injected
    }

    /// The kind of call the first injected fault failed.
    pub fn first_fault(&self) -> Option<Call> {
        self.lock().first_fault
    }

    /// Bytes read so far from the files of `role`.
    pub fn bytes_read(&self, role: FileRole) -> u64 {
        self.lock().read.get(&role).copied().unwrap_or(0)
    }

    /// Every file the store opened, with its role.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().files.keys().cloned().collect()
    }
}

impl StorageFactory for SimDisk {
    fn open(&self, path: &Path, role: FileRole) -> io::Result<Box<dyn StorageBackend>> {
        let mut state = self.lock();
        if state.crashed.is_some() {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        state.files.entry(path.to_path_buf()).or_default();
        Ok(Box::new(SimBackend {
            disk: self.clone(),
            path: path.to_path_buf(),
            role,
        }))
    }
}

/// One open file of a [`SimDisk`].
#[derive(Debug)]
struct SimBackend {
    disk: SimDisk,
    path: PathBuf,
    role: FileRole,
}

impl SimBackend {
    fn with_file<T>(&self, f: impl FnOnce(&mut SimFile) -> T) -> io::Result<T> {
        let mut state = self.disk.lock();
        if state.crashed.is_some() {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let file = state
            .files
            .get_mut(&self.path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such simulated file"))?;
        Ok(f(file))
    }

    fn mutate(&self, op: Pending) -> io::Result<()> {
        let call = match op {
            Pending::Write { .. } => Call::Write,
            Pending::SetLen(len) if len < self.len()? => Call::Shrink,
            Pending::SetLen(_) => Call::Grow,
        };
        {
            let mut state = self.disk.lock();
            state.mutate(call)?;
            state.calls.push((self.role, call));
        }
        self.with_file(|file| {
            apply(&mut file.current, &op);
            file.pending.push(op);
        })
    }
}

impl StorageBackend for SimBackend {
    fn len(&self) -> io::Result<u64> {
        self.with_file(|file| file.current.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        *self.disk.lock().read.entry(self.role).or_default() += out.len() as u64;
        if self.with_file(|file| file.current.read(offset, out))? {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mutate(Pending::SetLen(len))
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.mutate(Pending::Write {
            offset,
            data: data.to_vec(),
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let mut state = self.disk.lock();
            if state.crashed.is_some() {
                return Err(io::Error::from_raw_os_error(EIO));
            }
            let k = state.syncs(None);
            if let Some((at, keep)) = state.crash_at_sync {
                if k == at {
                    state.cut_power(keep);
                    return Err(io::Error::from_raw_os_error(EIO));
                }
            }
            state.mutate(Call::Sync)?;
            state.calls.push((self.role, Call::Sync));
        }
        self.with_file(|file| {
            file.durable = file.current.clone();
            file.pending.clear();
        })
    }
}
