//! A simulated disk for the store's [`StorageFactory`]: every file the store
//! opens lives in memory, with the bytes written kept apart from the bytes
//! synced, so that a test can cut the power at any sync (keeping none, all,
//! or a random part of what was not synced, torn at sector bounds), or make
//! the Nth write, set_len or sync fail with EIO or ENOSPC.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sessionstore::{FileRole, StorageBackend, StorageFactory};

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

#[derive(Clone, Debug, Default)]
struct SimFile {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
}

fn apply(bytes: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, data } => {
            let start = *offset as usize;
            if bytes.len() < start + data.len() {
                bytes.resize(start + data.len(), 0);
            }
            bytes[start..start + data.len()].copy_from_slice(data);
        }
        Pending::SetLen(len) => bytes.resize(*len as usize, 0),
    }
}

#[derive(Debug, Default)]
struct DiskState {
    files: BTreeMap<PathBuf, SimFile>,
    /// Writes, set_lens and syncs so far.
    mutations: u64,
    syncs: u64,
    fault: Option<Fault>,
    faults_injected: u64,
    /// The kind of call the first injected fault failed.
    first_fault: Option<Call>,
    crash_at_sync: Option<(u64, Keep)>,
    /// The files as found after the power cut, once it happened.
    crashed: Option<BTreeMap<PathBuf, Vec<u8>>>,
}

impl DiskState {
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
/// `StoreOptions { storage: Arc::new(disk.clone()), .. }`.
#[derive(Clone, Debug, Default)]
pub struct SimDisk(Arc<Mutex<DiskState>>);

impl SimDisk {
    /// A disk holding these files, all synced.
    pub fn with_files(files: BTreeMap<PathBuf, Vec<u8>>) -> Self {
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
    pub fn crashed(&self) -> Option<BTreeMap<PathBuf, Vec<u8>>> {
        self.lock().crashed.clone()
    }

    /// The files as written so far (what survives without a power cut).
    pub fn written(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let state = self.lock();
        state
            .files
            .iter()
            .map(|(p, f)| (p.clone(), f.current.clone()))
            .collect()
    }

    /// The files as synced so far (what a power cut now would leave).
    pub fn synced(&self) -> BTreeMap<PathBuf, Vec<u8>> {
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

    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    pub fn faults_injected(&self) -> u64 {
        self.lock().faults_injected
    }

    /// The kind of call the first injected fault failed.
    pub fn first_fault(&self) -> Option<Call> {
        self.lock().first_fault
    }

    /// Every file the store opened, with its role.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().files.keys().cloned().collect()
    }
}

impl StorageFactory for SimDisk {
    fn open(&self, path: &Path, _role: FileRole) -> io::Result<Box<dyn StorageBackend>> {
        let mut state = self.lock();
        if state.crashed.is_some() {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        state.files.entry(path.to_path_buf()).or_default();
        Ok(Box::new(SimBackend {
            disk: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

/// One open file of a [`SimDisk`].
#[derive(Debug)]
struct SimBackend {
    disk: SimDisk,
    path: PathBuf,
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
        self.disk.lock().mutate(call)?;
        self.with_file(|file| {
            apply(&mut file.current, &op);
            file.pending.push(op);
        })
    }
}

impl StorageBackend for SimBackend {
    fn len(&self) -> io::Result<u64> {
        self.with_file(|file| file.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.with_file(|file| {
            let start = offset as usize;
            match file.current.get(start..start + out.len()) {
                Some(bytes) => {
                    out.copy_from_slice(bytes);
                    Ok(())
                }
                None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end")),
            }
        })?
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
            let k = state.syncs;
            if let Some((at, keep)) = state.crash_at_sync {
                if k == at {
                    state.cut_power(keep);
                    return Err(io::Error::from_raw_os_error(EIO));
                }
            }
            state.mutate(Call::Sync)?;
            state.syncs += 1;
        }
        self.with_file(|file| {
            file.durable = file.current.clone();
            file.pending.clear();
        })
    }
}
