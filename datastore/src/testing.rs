//! A real etcd for tests and labs.
//!
//! [`EtcdServer`] runs the `etcd` binary (Debian's `etcd-server`, etcd 3.4 or later) as a
//! child process: on loopback with free ports and a private data dir for tests
//! ([`EtcdServer::start_local`]), or inside a network namespace the caller made for labs
//! ([`EtcdServer::start_in_netns`]). It can be stopped, paused and started again on the same
//! data and ports to test outages, and is killed when dropped.
//!
//! Servers leave their log and pid in a work dir under the system temp dir; a server whose
//! owning process died without dropping it is killed and cleaned up by the next
//! `start_local`/`start_in_netns` on the machine.
//!
//! Set `TORTIE_ETCD_BIN` to use an etcd other than the first one on `PATH`.

use std::{
    ffi::OsString,
    fs::{self, File},
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// How long a starting etcd may take to report healthy.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a starting etcd is asked whether it is healthy.
const HEALTH_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Attempts at finding free ports when another process takes them first.
const PORT_ATTEMPTS: usize = 5;
/// Prefix of every server's work dir in the system temp dir.
const WORK_DIR_PREFIX: &str = "tortie-etcd-";
/// Lines of etcd's log quoted in errors.
const LOG_TAIL_LINES: usize = 20;

/// Why an [`EtcdServer`] could not be started or controlled.
#[derive(Debug, thiserror::Error)]
pub enum EtcdServerError {
    /// No `etcd` binary was found.
    #[error(
        "etcd is not installed ({0}); install Debian's etcd-server package or set TORTIE_ETCD_BIN"
    )]
    NotInstalled(String),
    /// The network namespace to run etcd in does not exist.
    #[error("network namespace {0} does not exist (expected /run/netns/{0}); create it first with `ip netns add {0}`")]
    NoSuchNetns(String),
    /// An argument cannot work.
    #[error("{0}")]
    InvalidArgument(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// etcd exited while starting.
    #[error("etcd at {endpoint} exited while starting ({status}); its log ends with:\n{log_tail}")]
    Exited {
        /// The client URL it was to serve.
        endpoint: String,
        /// How it exited.
        status: ExitStatus,
        /// The last lines etcd logged.
        log_tail: String,
    },
    /// etcd did not report healthy in time.
    #[error("etcd at {endpoint} did not become healthy within {waited:?}; its log ends with:\n{log_tail}")]
    NotHealthy {
        /// The client URL it serves.
        endpoint: String,
        /// How long we waited.
        waited: Duration,
        /// The last lines etcd logged.
        log_tail: String,
    },
}

impl EtcdServerError {
    fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> EtcdServerError {
        let what = what.into();
        move |source| EtcdServerError::Io { what, source }
    }

    fn is_address_in_use(&self) -> bool {
        matches!(self, EtcdServerError::Exited { log_tail, .. } if log_tail.contains("address already in use"))
    }
}

/// A running (or stopped) etcd child process with its own data dir.
///
/// Dropping it kills etcd (SIGKILL) and removes its work dir, and for servers from
/// [`EtcdServer::start_local`] also the data dir.
#[derive(Debug)]
pub struct EtcdServer {
    binary: PathBuf,
    netns: Option<String>,
    client_addr: SocketAddrV4,
    peer_addr: SocketAddrV4,
    data_dir: PathBuf,
    /// etcd's log and pid file; for local servers also the data dir. Removed on drop.
    work_dir: tempfile::TempDir,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd on 127.0.0.1 with free client and peer ports and a fresh data dir, and
    /// waits until it reports healthy.
    ///
    /// Blocks for the start-up (typically under a second, at most 20 s); async callers on a
    /// busy runtime should use `spawn_blocking`.
    pub fn start_local() -> Result<EtcdServer, EtcdServerError> {
        Self::start_local_with_args(&[])
    }

    /// [`EtcdServer::start_local`] with extra etcd flags, like `--auth-token-ttl=1`. They
    /// apply to every later [`EtcdServer::start`] too.
    pub fn start_local_with_args(extra_args: &[&str]) -> Result<EtcdServer, EtcdServerError> {
        let binary = etcd_binary()?;
        reap_leftovers();
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let (client_port, peer_port) = free_port_pair()?;
            let work_dir = new_work_dir()?;
            let data_dir = work_dir.path().join("data");
            let mut server = EtcdServer {
                binary: binary.clone(),
                netns: None,
                client_addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, client_port),
                peer_addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, peer_port),
                data_dir,
                work_dir,
                child: None,
            };
            server.write_extra_args(extra_args)?;
            match server.start() {
                Ok(()) => return Ok(server),
                // Another process took a port between our probe and etcd's bind.
                Err(err) if err.is_address_in_use() => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            EtcdServerError::InvalidArgument("no free ports for etcd on 127.0.0.1".into())
        }))
    }

    /// [`EtcdServer::start_local`] for tests: `None`, after saying why on stderr, when etcd is
    /// not installed on a developer machine. Panics when etcd is missing and `CI` is set, or
    /// when an installed etcd fails to start, so a test can never pass without running.
    pub fn start_local_or_skip(test_name: &str) -> Option<EtcdServer> {
        if let Err(err) = etcd_binary() {
            if std::env::var_os("CI").is_some() {
                panic!("{test_name}: {err} (CI is set, so this test must run)");
            }
            eprintln!("SKIPPED {test_name}: {err}");
            return None;
        }
        match EtcdServer::start_local() {
            Ok(server) => Some(server),
            Err(err) => panic!("{test_name}: could not start etcd: {err}"),
        }
    }

    /// Starts etcd inside the existing network namespace `netns` (`/run/netns/<netns>`),
    /// serving clients on `listen_ip:port` and peers on `listen_ip:port+1`, with its data in
    /// `data_dir`, and waits until it reports healthy.
    ///
    /// `data_dir` belongs to the caller and is kept on drop, so a lab can restart etcd on
    /// the same data. Needs root (`nsenter`, `setns`).
    pub fn start_in_netns(
        netns: &str,
        listen_ip: Ipv4Addr,
        port: u16,
        data_dir: &Path,
    ) -> Result<EtcdServer, EtcdServerError> {
        let binary = etcd_binary()?;
        if netns.is_empty() || netns.contains('/') || !netns_path(netns).exists() {
            return Err(EtcdServerError::NoSuchNetns(netns.to_string()));
        }
        let peer_port = port.checked_add(1).filter(|_| port != 0).ok_or_else(|| {
            EtcdServerError::InvalidArgument(format!(
                "etcd client port {port} leaves no room for the peer port {port}+1"
            ))
        })?;
        reap_leftovers();
        let mut server = EtcdServer {
            binary,
            netns: Some(netns.to_string()),
            client_addr: SocketAddrV4::new(listen_ip, port),
            peer_addr: SocketAddrV4::new(listen_ip, peer_port),
            data_dir: data_dir.to_path_buf(),
            work_dir: new_work_dir()?,
            child: None,
        };
        server.start()?;
        Ok(server)
    }

    /// The client URLs, for [`crate::EtcdDatastore::connect`].
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.client_url()]
    }

    /// The client URL, like `http://127.0.0.1:41234`.
    pub fn client_url(&self) -> String {
        format!("http://{}", self.client_addr)
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddrV4 {
        self.client_addr
    }

    /// The data dir etcd keeps its database in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The network namespace etcd runs in, `None` for the caller's own.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The process id of the running etcd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether etcd is running (it may be paused).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Starts etcd again on the same data dir and ports after [`EtcdServer::stop`], and
    /// waits until it reports healthy. Does nothing when it is running.
    pub fn start(&mut self) -> Result<(), EtcdServerError> {
        if self.is_running() {
            return Ok(());
        }
        let log_path = self.work_dir.path().join("etcd.log");
        let log = File::create(&log_path).map_err(EtcdServerError::io(format!(
            "create {}",
            log_path.display()
        )))?;
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net={}", netns_path(netns).display()))
                    .arg("--")
                    .arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        if self.netns.is_some() {
            // A lab's etcd outlives the command that started it: keep a terminal's Ctrl-C
            // (sent to the foreground process group) away from it.
            command.process_group(0);
        }
        command
            .args(self.etcd_args()?)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // etcd reads any ETCD_* variable as a flag; keep the caller's out.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(&name);
            }
        }
        let child = command.spawn().map_err(EtcdServerError::io(format!(
            "run {} (for etcd at {})",
            self.binary.display(),
            self.client_url()
        )))?;
        let pid_path = self.work_dir.path().join("etcd.pid");
        fs::write(&pid_path, child.id().to_string())
            .map_err(EtcdServerError::io(format!("write {}", pid_path.display())))?;
        self.child = Some(child);
        match self.wait_healthy() {
            Ok(()) => Ok(()),
            Err(err) => {
                self.kill();
                Err(err)
            }
        }
    }

    /// Lets etcd run on after this value is gone, for a lab that outlives the process that
    /// built it. The work dir (with `etcd.log`) is kept and no longer reaped as a leftover;
    /// whoever tears the lab down kills [`DetachedEtcd::pid`] and removes
    /// [`DetachedEtcd::work_dir`]. Fails when etcd is not running.
    pub fn detach(mut self) -> Result<DetachedEtcd, EtcdServerError> {
        let pid = self.pid().filter(|_| self.is_running()).ok_or_else(|| {
            EtcdServerError::InvalidArgument(format!(
                "etcd at {} is not running",
                self.client_url()
            ))
        })?;
        // Without an owner pid the leftover sweep of other servers leaves the dir alone.
        let owner = self.work_dir.path().join("owner.pid");
        fs::remove_file(&owner)
            .map_err(EtcdServerError::io(format!("remove {}", owner.display())))?;
        // Forgetting the child neither kills nor waits for it; init reaps it later.
        self.child = None;
        // Swap in a throwaway dir so the kept one is not removed when `self` drops.
        let placeholder = new_work_dir()?;
        let work_dir = std::mem::replace(&mut self.work_dir, placeholder).keep();
        Ok(DetachedEtcd {
            pid,
            client_url: self.client_url(),
            log_file: work_dir.join("etcd.log"),
            work_dir,
        })
    }

    /// Kills etcd (SIGKILL, like a crash) and waits for it to exit; the data dir stays for
    /// [`EtcdServer::start`]. Does nothing when it is not running.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Freezes etcd (SIGSTOP): connections stay open but nothing answers, like a hung or
    /// unreachable server. Undo with [`EtcdServer::resume`].
    pub fn pause(&mut self) -> Result<(), EtcdServerError> {
        self.signal(Signal::SIGSTOP)
    }

    /// Lets a paused etcd run again (SIGCONT).
    pub fn resume(&mut self) -> Result<(), EtcdServerError> {
        self.signal(Signal::SIGCONT)
    }

    fn signal(&mut self, signal: Signal) -> Result<(), EtcdServerError> {
        let pid = self.pid().ok_or_else(|| {
            EtcdServerError::InvalidArgument(format!(
                "etcd at {} is not running",
                self.client_url()
            ))
        })?;
        kill(Pid::from_raw(pid as i32), signal).map_err(|errno| EtcdServerError::Io {
            what: format!("send {signal} to etcd (pid {pid})"),
            source: io::Error::from(errno),
        })
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process dies of SIGKILL too; no need to resume it first.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn etcd_args(&self) -> Result<Vec<OsString>, EtcdServerError> {
        let client_url = self.client_url();
        let peer_url = format!("http://{}", self.peer_addr);
        let name = "tortie";
        let mut args: Vec<OsString> = vec![
            format!("--name={name}").into(),
            {
                let mut arg = OsString::from("--data-dir=");
                arg.push(&self.data_dir);
                arg
            },
            format!("--listen-client-urls={client_url}").into(),
            format!("--advertise-client-urls={client_url}").into(),
            format!("--listen-peer-urls={peer_url}").into(),
            format!("--initial-advertise-peer-urls={peer_url}").into(),
            format!("--initial-cluster={name}={peer_url}").into(),
            "--initial-cluster-state=new".into(),
            // Unique per work dir, so leftovers can be recognised by their command line.
            format!("--initial-cluster-token={}", self.work_dir_name()).into(),
            "--logger=zap".into(),
            "--log-level=error".into(),
            "--log-outputs=stderr".into(),
        ];
        args.extend(self.read_extra_args()?.into_iter().map(OsString::from));
        Ok(args)
    }

    fn work_dir_name(&self) -> String {
        self.work_dir
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn write_extra_args(&self, extra_args: &[&str]) -> Result<(), EtcdServerError> {
        let path = self.work_dir.path().join("extra-args");
        fs::write(&path, extra_args.join("\n"))
            .map_err(EtcdServerError::io(format!("write {}", path.display())))
    }

    fn read_extra_args(&self) -> Result<Vec<String>, EtcdServerError> {
        let path = self.work_dir.path().join("extra-args");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter(|line| !line.is_empty())
                .map(String::from)
                .collect()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(err) => Err(EtcdServerError::io(format!("read {}", path.display()))(err)),
        }
    }

    fn wait_healthy(&mut self) -> Result<(), EtcdServerError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(EtcdServerError::Exited {
                        endpoint: self.client_url(),
                        status,
                        log_tail: self.log_tail(),
                    });
                }
            }
            if probe_health(self.netns.as_deref(), self.client_addr) {
                return Ok(());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                return Err(EtcdServerError::NotHealthy {
                    endpoint: self.client_url(),
                    waited: STARTUP_TIMEOUT,
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(HEALTH_POLL_INTERVAL);
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.work_dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        if tail.is_empty() {
            "(nothing)".into()
        } else {
            tail
        }
    }
}

/// An etcd left running by [`EtcdServer::detach`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetachedEtcd {
    /// Its process id.
    pub pid: u32,
    /// Its client URL.
    pub client_url: String,
    /// Where it logs.
    pub log_file: PathBuf,
    /// Its work dir (log, pid file), to remove once it is stopped.
    pub work_dir: PathBuf,
}

/// Whether etcd serving `addr` inside network namespace `netns` (the caller's own when
/// `None`) answers its health check.
pub fn is_healthy(netns: Option<&str>, addr: SocketAddrV4) -> bool {
    probe_health(netns, addr)
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        // The TempDir field removes the work dir (and a local server's data) after this.
    }
}

/// The etcd binary: `TORTIE_ETCD_BIN`, else the first `etcd` on `PATH`.
pub fn etcd_binary() -> Result<PathBuf, EtcdServerError> {
    if let Some(path) = std::env::var_os("TORTIE_ETCD_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(EtcdServerError::NotInstalled(format!(
                "TORTIE_ETCD_BIN={} is not a file",
                path.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| EtcdServerError::NotInstalled("no etcd on PATH".into()))
}

fn netns_path(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

/// Two ports that were free on 127.0.0.1 a moment ago.
fn free_port_pair() -> Result<(u16, u16), EtcdServerError> {
    let bind = || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(EtcdServerError::io("find a free port on 127.0.0.1"))
    };
    // Both listeners stay open until both ports are known, so they differ.
    let client = bind()?;
    let peer = bind()?;
    let port = |listener: &TcpListener| {
        listener
            .local_addr()
            .map(|addr| addr.port())
            .map_err(EtcdServerError::io("read a bound port"))
    };
    Ok((port(&client)?, port(&peer)?))
}

fn new_work_dir() -> Result<tempfile::TempDir, EtcdServerError> {
    let dir = tempfile::Builder::new()
        .prefix(WORK_DIR_PREFIX)
        .tempdir()
        .map_err(EtcdServerError::io("create a temp dir for etcd"))?;
    let owner = dir.path().join("owner.pid");
    fs::write(&owner, std::process::id().to_string())
        .map_err(EtcdServerError::io(format!("write {}", owner.display())))?;
    Ok(dir)
}

/// Kills the etcds of processes that died without dropping their [`EtcdServer`] and
/// removes their work dirs. Only kills a process whose command line names the work dir, so
/// a reused pid is never hit.
fn reap_leftovers() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(WORK_DIR_PREFIX)
        {
            continue;
        }
        let dir = entry.path();
        let read_pid = |name: &str| -> Option<u32> {
            fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok()
        };
        // No owner yet: a server being created right now.
        let Some(owner) = read_pid("owner.pid") else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        if let Some(etcd) = read_pid("etcd.pid") {
            let cmdline = fs::read(format!("/proc/{etcd}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let marker = format!(
                "--initial-cluster-token={}",
                entry.file_name().to_string_lossy()
            );
            if cmdline.contains(&marker) {
                let _ = kill(Pid::from_raw(etcd as i32), Signal::SIGKILL);
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Whether etcd at `addr` answers `GET /health` with `{"health":"true"}`, asked from inside
/// `netns` when given.
fn probe_health(netns: Option<&str>, addr: SocketAddrV4) -> bool {
    match netns {
        None => probe_health_here(addr),
        Some(netns) => {
            // setns changes only the calling thread: use a thread of our own for it.
            let path = netns_path(netns);
            std::thread::spawn(move || {
                let Ok(file) = File::open(&path) else {
                    return false;
                };
                if nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                    return false;
                }
                probe_health_here(addr)
            })
            .join()
            .unwrap_or(false)
        }
    }
}

fn probe_health_here(addr: SocketAddrV4) -> bool {
    let timeout = Duration::from_secs(1);
    let Ok(mut stream) = TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    response.starts_with("HTTP/1.1 200") && response.contains(r#""health":"true""#)
}
