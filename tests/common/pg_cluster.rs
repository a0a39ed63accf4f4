//! A PostgreSQL server of a test's own, for the tests that kill it: made
//! by `initdb` in a temporary folder, run as an unprivileged account when
//! the test runs as root (PostgreSQL refuses root), on a free loopback
//! port, in a process group of its own so that a SIGKILL takes the
//! postmaster and every backend at once, as a crash of the server would.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The account the server runs as when the test runs as root.
const NOBODY: u32 = 65534;

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    server: Option<Child>,
}

impl PgCluster {
    /// A new cluster, started; `None` (after saying so) when this machine
    /// has no PostgreSQL server binaries.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = server_binaries() else {
            eprintln!("SKIPPED: no PostgreSQL server binaries (initdb, postgres) on this machine");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("sessionstore-pg-")
            .tempdir_in("/tmp")
            .expect("temporary folder");
        if is_root() {
            chown(dir.path(), NOBODY);
        }
        let status = as_server_account(Command::new(bin.join("initdb")))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--encoding=UTF8",
                "--no-locale",
            ])
            .arg("-D")
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        let mut cluster = PgCluster {
            dir,
            bin,
            port: free_port(),
            server: None,
        };
        cluster.run();
        Some(cluster)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// SIGKILL to the postmaster and every backend, then waits for them.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let group = server.id() as i32;
            // SAFETY: a plain kill(2) of the process group the server leads.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            server.wait().expect("reap the postmaster");
            // The backends are gone once nothing answers on the port.
            let until = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Starts the server again (crash recovery replays its WAL).
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    fn run(&mut self) {
        let socket_dir = self.dir.path().to_str().expect("a UTF-8 path");
        let mut command = as_server_account(Command::new(self.bin.join("postgres")));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("unix_socket_directories={socket_dir}")])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        self.server = Some(command.spawn().expect("start postgres"));
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            match postgres::Client::connect(&self.url(), postgres::NoTls) {
                Ok(_) => return,
                Err(e) if Instant::now() > until => panic!("PostgreSQL did not start: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The folder of `initdb` and `postgres`: on the PATH, else the newest of
/// Debian's /usr/lib/postgresql/*/bin.
fn server_binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file());
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("give the cluster's folder to its account");
}

/// `command`, run as `nobody` when this process is root.
fn as_server_account(command: Command) -> Command {
    if !is_root() {
        return command;
    }
    let mut wrapped = Command::new("setpriv");
    wrapped
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(command.get_program())
        .args(command.get_args());
    wrapped
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("a free port");
    listener.local_addr().expect("its address").port()
}
