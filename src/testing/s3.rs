//! A real S3 server for tests and benchmarks: SeaweedFS (`weed mini`) on
//! loopback, with its own data dir and ports, started and stopped here.
//!
//! Integration tests and benchmarks reach it as `geoshard::testing::s3`
//! (feature `testing`, on through the dev-dependency on the crate itself).
//! It uses only std and `tempfile`, so it compiles whatever other features
//! are on.
//!
//! The binary comes from `GEOSHARD_WEED` if set, else from
//! `scripts/s3-test-server install`. A server that cannot start is a panic,
//! never a skipped test.
//!
//! Buckets are created with `curl --aws-sigv4` (curl >= 7.75, on the project's
//! machines; `apt-get install curl` otherwise). `object_store` cannot do it (it
//! has no create-bucket call), and signing SigV4 by hand would need SHA-256
//! and HMAC, which no dependency of ours provides.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Buckets of [`S3Server::shared`].
pub const SHARED_BUCKETS: [&str; 4] = ["geoshard-test", "geoshard-a", "geoshard-b", "geoshard-c"];

const ACCESS_KEY_ID: &str = "geoshard-test";
const SECRET_ACCESS_KEY: &str = "geoshard-test-secret";
const REGION: &str = "us-east-1";

/// `weed mini` listens on 5 HTTP ports (s3, master, volume, filer, admin)
/// from a base port, and on each one's gRPC twin `GRPC_PORT_OFFSET` above.
const PORT_COUNT: u16 = 5;
const GRPC_PORT_OFFSET: u16 = 10_000;
/// Base ports are drawn from `BASE_PORT_MIN..BASE_PORT_MAX`: both ranges stay
/// below Linux's ephemeral ports (32768..), where outgoing connections would
/// take them from under us.
const BASE_PORT_MIN: u16 = 20_000;
const BASE_PORT_MAX: u16 = 22_760;
const _: () = assert!(BASE_PORT_MAX + PORT_COUNT + GRPC_PORT_OFFSET <= 32_768);

/// Tries at picking free ports and starting on them: another process may bind
/// a port between our check and the server's bind.
const START_ATTEMPTS_MAX: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take; a loaded CI machine needs more than
/// the ~1.2 s it takes when idle.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a restart waits for the old process's ports to be free.
const PORTS_FREE_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_LEN: u64 = 4096;

/// A SeaweedFS server on `127.0.0.1`; killed and its data dir removed on drop.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The S3 access key the server accepts.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    /// The region requests name.
    pub region: String,
    base_port: u16,
    /// The process-wide server: its guard removes the data dir at exit.
    shared: bool,
    state: Mutex<State>,
    /// Removed on drop, after the process is gone (fields drop after `drop`).
    dir: tempfile::TempDir,
}

struct State {
    /// `None` while stopped.
    child: Option<Child>,
    /// Buckets to wait for after a restart.
    buckets: Vec<String>,
}

impl S3Server {
    /// Starts a new private server (own data dir and ports) with the given
    /// buckets created.
    ///
    /// # Panics
    ///
    /// If the server cannot be installed or started, or does not create the
    /// buckets within 30 s; the message carries the tail of the server log.
    pub fn start(buckets: &[&str]) -> S3Server {
        S3Server::start_with(buckets, false)
    }

    /// [`start`](Self::start); with `shared`, the guard also removes the
    /// data dir when the process is gone (a static is never dropped).
    fn start_with(buckets: &[&str], shared: bool) -> S3Server {
        let weed = weed_path();
        let mut last_failure = String::new();
        for attempt in 1..=START_ATTEMPTS_MAX {
            let base_port = free_base_port();
            let dir = tempfile::Builder::new()
                .prefix("geoshard-s3-")
                .tempdir()
                .expect("create the S3 server's data dir");
            let server = S3Server {
                endpoint: format!("http://127.0.0.1:{base_port}"),
                access_key_id: ACCESS_KEY_ID.to_owned(),
                secret_access_key: SECRET_ACCESS_KEY.to_owned(),
                region: REGION.to_owned(),
                base_port,
                shared,
                state: Mutex::new(State {
                    child: None,
                    buckets: buckets.iter().map(|b| (*b).to_owned()).collect(),
                }),
                dir,
            };
            let started = Instant::now();
            let mut state = server.lock();
            state.child = Some(server.spawn(weed));
            match server.wait_ready(&mut state) {
                Ok(()) => {
                    drop(state);
                    eprintln!(
                        "S3Server: SeaweedFS ready at {} in {:?}",
                        server.endpoint,
                        started.elapsed()
                    );
                    return server;
                }
                Err(failure) => {
                    last_failure = format!("attempt {attempt}: {failure}");
                    if attempt < START_ATTEMPTS_MAX {
                        eprintln!("S3Server::start: {last_failure}; retrying on other ports");
                    }
                }
            }
            // Dropping `server` kills what is left and removes its dir.
        }
        panic!("S3Server::start: SeaweedFS did not start ({last_failure})");
    }

    /// A server shared by the whole test process, with buckets
    /// [`SHARED_BUCKETS`]. It is killed and its data dir removed when the
    /// process exits.
    ///
    /// # Panics
    ///
    /// As [`S3Server::start`].
    pub fn shared() -> &'static S3Server {
        static SHARED: OnceLock<S3Server> = OnceLock::new();
        // A static is never dropped: the guard script kills the server and
        // removes its directory when this process is gone.
        SHARED.get_or_init(|| S3Server::start_with(&SHARED_BUCKETS, true))
    }

    /// Creates `name` (no-op if it exists).
    ///
    /// # Panics
    ///
    /// If the server is stopped or does not create it within 30 s.
    pub fn create_bucket(&self, name: &str) {
        let mut state = self.lock();
        if !state.buckets.iter().any(|b| b == name) {
            state.buckets.push(name.to_owned());
        }
        if let Err(failure) = self.wait_bucket(&mut state, name) {
            panic!("S3Server::create_bucket({name}): {failure}");
        }
    }

    /// Stops the server (TERM, then KILL after 5 s), keeping its data.
    /// No-op if stopped.
    pub fn stop(&self) {
        let mut state = self.lock();
        if let Some(child) = state.child.take() {
            let started = Instant::now();
            terminate(child);
            self.remove_sockets();
            eprintln!("S3Server: SeaweedFS stopped in {:?}", started.elapsed());
        }
    }

    /// Starts the server again on the same ports and data, and waits until its
    /// buckets answer. No-op if running.
    ///
    /// # Panics
    ///
    /// As [`S3Server::start`], without retrying on other ports.
    pub fn restart(&self) {
        let mut state = self.lock();
        if state.child.is_some() {
            return;
        }
        let started = Instant::now();
        // The old process's ports must be free again before weed checks them.
        let deadline = Instant::now() + PORTS_FREE_TIMEOUT;
        while !ports_free(self.base_port) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        state.child = Some(self.spawn(weed_path()));
        if let Err(failure) = self.wait_ready(&mut state) {
            panic!("S3Server::restart: SeaweedFS did not start again ({failure})");
        }
        eprintln!(
            "S3Server: SeaweedFS ready again at {} in {:?}",
            self.endpoint,
            started.elapsed()
        );
    }

    /// Whether the process was started and has not been stopped (it may have
    /// died since).
    pub fn is_running(&self) -> bool {
        self.lock().child.is_some()
    }

    /// The server's data dir (SeaweedFS data, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked holding the lock leaves a usable state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    fn spawn(&self, weed: &Path) -> Child {
        let dir = self.dir.path();
        let data = dir.join("data");
        let logs = dir.join("logs");
        std::fs::create_dir_all(&data).expect("create the S3 server's data dir");
        std::fs::create_dir_all(&logs).expect("create the S3 server's log dir");
        // Our ports were free, so sockets named after them are stale.
        self.remove_sockets();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the S3 server's log");
        let log_err = log.try_clone().expect("clone the S3 server's log");
        let p = self.base_port;
        // The guard ties the server to this process: killed when it is
        // gone, however it dies (tests must never leak servers).
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-test-server");
        let mut cmd = Command::new(script);
        cmd.arg("guard")
            .arg(std::process::id().to_string())
            .arg(if self.shared {
                dir.as_os_str()
            } else {
                "".as_ref()
            })
            .arg(self.base_port.to_string())
            .arg("--")
            .arg(weed);
        // `-logdir` is a flag of `weed` itself, before the command: without
        // it, glog writes to /tmp.
        cmd.arg(format!("-logdir={}", logs.display()))
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={p}"))
            .arg(format!("-master.port={}", p + 1))
            .arg(format!("-volume.port={}", p + 2))
            .arg(format!("-filer.port={}", p + 3))
            .arg(format!("-admin.port={}", p + 4))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                // On by default; it would send statistics off the machine.
                "-master.telemetry=false",
                // The volume server waits 10 s before stopping otherwise.
                "-volume.preStopSeconds=0",
            ])
            .arg(format!(
                "-filer.localSocket={}",
                dir.join("filer.sock").display()
            ))
            .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Its only credentials are ours: no stray AWS_* of the caller.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("S3Server: cannot run {}: {e}", weed.display()))
    }

    /// Waits until every known bucket answers a create with 200 or 409 (the
    /// port answers before buckets work), then, after a restart, until the
    /// master knows every volume on disk: until the volume server's first
    /// heartbeat (up to ~5 s on a busy machine), reads of old objects fail
    /// with 500 "volume N not found".
    fn wait_ready(&self, state: &mut State) -> Result<(), String> {
        for bucket in state.buckets.clone() {
            self.wait_bucket(state, &bucket)?;
        }
        for volume_id in self.volume_ids_on_disk() {
            let url = format!(
                "http://127.0.0.1:{}/dir/lookup?volumeId={volume_id}",
                self.base_port + 1
            );
            self.wait_status(state, &format!("volume {volume_id} known"), || {
                curl(&[], &url)
            })?;
        }
        Ok(())
    }

    fn wait_bucket(&self, state: &mut State, bucket: &str) -> Result<(), String> {
        let url = format!("{}/{bucket}", self.endpoint);
        let sigv4 = format!("aws:amz:{}:s3", self.region);
        let user = format!("{}:{}", self.access_key_id, self.secret_access_key);
        let args = [
            "--aws-sigv4",
            &sigv4,
            "--user",
            &user,
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            "-X",
            "PUT",
        ];
        self.wait_status(state, &format!("bucket {bucket} created"), || {
            curl(&args, &url).map(|code| if code == 409 { 200 } else { code })
        })
    }

    /// Calls `request` until it answers HTTP 200, the server exits, or
    /// [`READY_TIMEOUT`] passes.
    fn wait_status(
        &self,
        state: &mut State,
        what: &str,
        mut request: impl FnMut() -> Result<u16, String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let Some(child) = state.child.as_mut() else {
                return Err("the server is stopped".to_owned());
            };
            if let Ok(Some(status)) = child.try_wait() {
                state.child = None;
                return Err(format!("weed exited ({status}){}", self.log_tail()));
            }
            let last = match request() {
                Ok(200) => return Ok(()),
                Ok(code) => format!("HTTP {code}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "not {what} after {READY_TIMEOUT:?} (last answer: {last}){}",
                    self.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ids of the volumes in the data dir: files `<id>.dat` and
    /// `<collection>_<id>.dat`.
    fn volume_ids_on_disk(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("data")) else {
            return Vec::new();
        };
        let mut ids: Vec<u32> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".dat")?;
                stem.rsplit('_').next()?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The tail of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let Ok(mut file) = File::open(self.log_path()) else {
            return String::from("\n(no server log)");
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_LEN)));
        let mut tail = Vec::new();
        let _ = file.read_to_end(&mut tail);
        format!(
            "\n--- tail of {} ---\n{}",
            self.log_path().display(),
            String::from_utf8_lossy(&tail)
        )
    }

    /// SeaweedFS leaves `/tmp/seaweedfs-<role>-<port>.sock` for some of its
    /// ports when it is killed.
    fn remove_sockets(&self) {
        let Ok(entries) = std::fs::read_dir("/tmp") else {
            return;
        };
        let ports: Vec<u16> = (0..PORT_COUNT)
            .flat_map(|i| [self.base_port + i, self.base_port + i + GRPC_PORT_OFFSET])
            .collect();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(rest) = name.strip_prefix("seaweedfs-") else {
                continue;
            };
            let Some(port) = rest
                .strip_suffix(".sock")
                .and_then(|r| r.rsplit('-').next())
                .and_then(|p| p.parse::<u16>().ok())
            else {
                continue;
            };
            if ports.contains(&port) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Kills the process at once (its data is about to go) and removes its
    /// sockets.
    fn kill_and_clean(&self) {
        // `try_lock`: at exit, a thread may still hold it.
        let child = match self.state.try_lock() {
            Ok(mut state) => state.child.take(),
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().child.take(),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut child) = child {
            // USR1: the guard kills the server at once, then exits.
            signal(&child, "-USR1");
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_sockets();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill_and_clean();
    }
}

/// `curl` to a loopback `url`: the HTTP status, or why none came.
fn curl(args: &[&str], url: &str) -> Result<u16, String> {
    let output = Command::new("curl")
        .args([
            "-q", // no ~/.curlrc
            "--silent",
            "--show-error",
            "--noproxy",
            "*",
            "--max-time",
            "5",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
        ])
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run curl (is it installed?): {e}"))?;
    let code = String::from_utf8_lossy(&output.stdout);
    match code.trim().parse::<u16>() {
        Ok(code) if code != 0 => Ok(code),
        _ => Err(format!(
            "curl: {} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// TERM (a graceful stop), then after [`STOP_TIMEOUT`] USR1 (the guard
/// kills the server at once), then KILL for the guard itself. Killing only
/// the guard would leave the server running and holding its ports.
fn terminate(mut child: Child) {
    for (sig, timeout) in [("-TERM", STOP_TIMEOUT), ("-USR1", Duration::from_secs(5))] {
        signal(&child, sig);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends `sig` (`-TERM`, `-USR1`) to `child` with the `kill` command (no
/// `unsafe` in the project outside the codec and the mmap/io_uring edges).
fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The `weed` binary: `GEOSHARD_WEED`, else installed by
/// `scripts/s3-test-server install` (once per process).
fn weed_path() -> &'static Path {
    static WEED: OnceLock<PathBuf> = OnceLock::new();
    WEED.get_or_init(|| {
        if let Some(path) = std::env::var_os("GEOSHARD_WEED").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "GEOSHARD_WEED={} is not a file",
                path.display()
            );
            return path;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-test-server");
        let output = Command::new(&script)
            .arg("install")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} install failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let path = OsString::from(String::from_utf8_lossy(&output.stdout).trim());
        PathBuf::from(path)
    })
}

/// A base port `P` with `P..P+5` and their gRPC twins all free now.
/// Whether all ports of the server at `base` (and their gRPC twins) can be
/// bound now.
fn ports_free(base: u16) -> bool {
    (0..PORT_COUNT)
        .flat_map(|i| [base + i, base + i + GRPC_PORT_OFFSET])
        .all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

fn free_base_port() -> u16 {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // splitmix64 of pid, time and call count: parallel tests and processes
    // start from different places.
    let mut state = nanos ^ (u64::from(std::process::id()) << 32) ^ calls.wrapping_mul(0x9E37);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    // Bases this process handed out: a stopped server's ports are free
    // but will be wanted again by its restart.
    static CLAIMED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let span = u64::from(BASE_PORT_MAX - BASE_PORT_MIN);
    for _ in 0..1000 {
        let base = BASE_PORT_MIN + u16::try_from(next() % span).expect("below span");
        let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        if claimed.iter().any(|&c| c.abs_diff(base) < PORT_COUNT) {
            continue;
        }
        if ports_free(base) {
            claimed.push(base);
            return base;
        }
    }
    panic!("S3Server: no free ports in {BASE_PORT_MIN}..{BASE_PORT_MAX} after 1000 tries");
}
