//! A process holding a store, for the tests of what other processes can
//! do meanwhile: the test binary run again as a child (its ignored test
//! `holder_child`, selected with `--exact`, which calls [`child`]). It opens
//! the store, says `OPEN`, optionally appends durably to a session of its
//! own (user `holder`), printing `ACK <session> <id> <content>` for each
//! acknowledged message, and closes the store when its stdin closes.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use sessionstore::{NewMessage, SessionStore, StoreOptions, Uuid};

/// Tells the child where the store is.
const HOLDER_ENV: &str = "SESSIONSTORE_HOLDER_STORE";
/// `write` makes the child append until told to stop.
const WRITE_ENV: &str = "SESSIONSTORE_HOLDER_WRITES";
/// `off` makes the child open the store without its socket.
const SOCKET_ENV: &str = "SESSIONSTORE_HOLDER_SOCKET";

/// The child's body, for the ignored test `holder_child` each test file
/// using this module declares.
pub fn child() {
    let Some(path) = std::env::var_os(HOLDER_ENV) else {
        return;
    };
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").expect("parent reads stdout");
        out.flush().expect("parent reads stdout");
    };
    let options = StoreOptions {
        serve_socket: std::env::var(SOCKET_ENV).as_deref() != Ok("off"),
        ..StoreOptions::default()
    };
    let store = SessionStore::open_with(Path::new(&path), options).expect("holder opens the store");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = (std::env::var(WRITE_ENV).as_deref() == Ok("write")).then(|| {
        let session = store.create_session(Some("holder")).expect("holder's session");
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let content = format!("holder message {n}");
                let id = store
                    .add_message(session, NewMessage::user(content.clone()))
                    .expect("holder appends");
                say(format!("ACK {session} {id} {content}"));
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    });
    say("OPEN".into());
    // Runs until the parent closes stdin.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    stop.store(true, Ordering::Relaxed);
    if let Some(writer) = writer {
        writer.join().expect("holder's writer");
    }
    drop(store);
    say("CLOSED".into());
}

/// A running holder and the lines it printed.
pub struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Holder {
    /// Starts a holder of `path` and waits until the store is open.
    pub fn start(path: &Path, writes: bool, socket: bool) -> Holder {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "holder_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLDER_ENV, path)
            .env(WRITE_ENV, if writes { "write" } else { "idle" })
            .env(SOCKET_ENV, if socket { "on" } else { "off" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the holder");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let holder = Holder {
            child,
            stdin,
            lines,
            reader: Some(reader),
        };
        holder.wait_for("OPEN");
        holder
    }

    /// The lines it printed since the last look, without waiting.
    pub fn printed(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Waits for a line ending with `marker` (the harness prints its own
    /// text before the child's first line).
    fn wait_for(&self, marker: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the holder never said {marker}; it said {seen:?}"));
            let found = line.ends_with(marker);
            seen.push(line);
            if found {
                return seen;
            }
        }
    }

    /// Closes its stdin, waits until it closed the store and exited, and
    /// gives every line it printed from now on.
    pub fn stop(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let seen = self.wait_for("CLOSED");
        assert!(self.child.wait().expect("holder exits").success());
        if let Some(reader) = self.reader.take() {
            reader.join().expect("reader");
        }
        seen
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The messages a holder acknowledged among `lines`: session, id, content.
pub fn acknowledged(lines: &[String]) -> Vec<(Uuid, u64, String)> {
    lines
        .iter()
        .filter_map(|line| {
            let rest = &line[line.find("ACK ")? + 4..];
            let mut parts = rest.splitn(3, ' ');
            Some((
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
                parts.next()?.to_owned(),
            ))
        })
        .collect()
}

/// Asserts that `store` holds every acknowledged message, as acknowledged.
pub fn assert_kept(store: &SessionStore, acked: &[(Uuid, u64, String)]) {
    for (session, id, content) in acked {
        let (found_session, message) = store
            .get_message(*id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged message {id} is lost"));
        assert_eq!((found_session, &message.content), (*session, content));
    }
}
