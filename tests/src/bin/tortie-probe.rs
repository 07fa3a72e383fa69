//! `tortie-probe`: the server and client of the lab's connectivity probes.
//!
//! - `tortie-probe serve --tcp 80,81 --udp 80,81 --sctp 80,81` listens until killed and
//!   prints `ready` once every socket is open;
//! - `tortie-probe connect [--timeout-ms N] PROTO:IP:PORT…` tries every target at once and
//!   prints one `TARGET OUTCOME [detail]` line per target, in the order given.
//!
//! - `tortie-probe rr-serve PORT` answers every byte received on a TCP connection with one
//!   byte; `tortie-probe rr IP:PORT --seconds S` sends one byte and waits for the answer,
//!   again and again on one connection, and prints one JSON line: transactions per second
//!   and latency percentiles (netperf's TCP_RR).
//!
//! See `tortie_lab::probe` for what counts as connected for each protocol.

use std::io::{ErrorKind, Write};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tortie_lab::probe::{self, Outcome, Protocol, Target};

#[derive(Parser)]
#[command(
    name = "tortie-probe",
    about = "Serve and probe TCP, UDP and SCTP ports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the given ports until killed.
    Serve {
        /// TCP ports to accept connections on, comma separated.
        #[arg(long, value_delimiter = ',')]
        tcp: Vec<u16>,
        /// UDP ports to echo datagrams on.
        #[arg(long, value_delimiter = ',')]
        udp: Vec<u16>,
        /// SCTP ports to answer INIT on.
        #[arg(long, value_delimiter = ',')]
        sctp: Vec<u16>,
    },
    /// Answer request/response clients on a TCP port (one byte for one byte) until killed.
    RrServe {
        /// The TCP port.
        port: u16,
    },
    /// Request/response over one TCP connection for a while; prints a JSON summary.
    Rr {
        /// `IP:PORT` of an `rr-serve`.
        server: SocketAddrV4,
        /// How long to run.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Probe every target in parallel.
    Connect {
        /// How long each probe waits for an answer.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// `PROTO:IP:PORT`, e.g. `TCP:10.65.0.3:80`.
        #[arg(required = true)]
        targets: Vec<Target>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { tcp, udp, sctp } => serve(&tcp, &udp, &sctp),
        Command::RrServe { port } => rr_serve(port),
        Command::Rr { server, seconds } => rr(server, Duration::from_secs_f64(seconds)),
        Command::Connect {
            timeout_ms,
            targets,
        } => {
            connect_all(&targets, Duration::from_millis(timeout_ms));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tortie-probe: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn any(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
}

fn serve(tcp: &[u16], udp: &[u16], sctp: &[u16]) -> Result<()> {
    let mut workers = Vec::new();
    for &port in tcp {
        let listener =
            TcpListener::bind(any(port)).with_context(|| format!("listening on TCP {port}"))?;
        workers.push(thread::spawn(move || {
            // Accepting completes the handshake; the probe needs nothing more.
            for stream in listener.incoming() {
                drop(stream);
            }
        }));
    }
    for &port in udp {
        let socket = UdpSocket::bind(any(port)).with_context(|| format!("binding UDP {port}"))?;
        workers.push(thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((len, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..len], from);
            }
        }));
    }
    if !sctp.is_empty() {
        let socket = raw_sctp_socket().context("opening a raw SCTP socket (needs CAP_NET_RAW)")?;
        let ports = sctp.to_vec();
        workers.push(thread::spawn(move || answer_sctp(&socket, &ports)));
    }
    println!("ready");
    std::io::stdout().flush().context("writing to stdout")?;
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

fn rr_serve(port: u16) -> Result<()> {
    let listener =
        TcpListener::bind(any(port)).with_context(|| format!("listening on TCP {port}"))?;
    println!("ready");
    std::io::stdout().flush().context("writing to stdout")?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let mut byte = [0u8; 1];
            while std::io::Read::read_exact(&mut stream, &mut byte).is_ok() {
                if stream.write_all(&byte).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

fn rr(server: SocketAddrV4, duration: Duration) -> Result<()> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(server), Duration::from_secs(3))
        .with_context(|| format!("connecting to {server}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut latencies_ns: Vec<u64> = Vec::with_capacity(1 << 20);
    let mut byte = [1u8; 1];
    let started = Instant::now();
    while started.elapsed() < duration {
        let sent = Instant::now();
        stream.write_all(&byte)?;
        std::io::Read::read_exact(&mut stream, &mut byte)
            .with_context(|| format!("waiting for {server}'s answer"))?;
        latencies_ns.push(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies_ns.sort_unstable();
    let rank = |q: f64| {
        let index =
            ((q * latencies_ns.len() as f64).ceil() as usize).clamp(1, latencies_ns.len().max(1));
        latencies_ns.get(index - 1).copied().unwrap_or(0) as f64 / 1e3
    };
    println!(
        "{{\"transactions\":{},\"seconds\":{elapsed:.3},\"rate\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
        latencies_ns.len(),
        latencies_ns.len() as f64 / elapsed,
        rank(0.50),
        rank(0.99)
    );
    Ok(())
}

fn raw_sctp_socket() -> std::io::Result<Socket> {
    Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(SockProtocol::from(probe::IPPROTO_SCTP)),
    )
}

/// Receives into `buf`, returning the bytes read.
fn recv(socket: &Socket, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and `recv` only writes into the
    // slice; every byte of `buf` is already initialised.
    let uninit = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) };
    socket.recv(uninit)
}

fn answer_sctp(socket: &Socket, ports: &[u16]) {
    let mut buf = [0u8; 1500];
    let server_tag = random_u32() | 1;
    loop {
        let Ok(len) = recv(socket, &mut buf) else {
            return;
        };
        let Some(init) = probe::parse_sctp(&buf[..len]) else {
            continue;
        };
        if !init.is_init() || !ports.contains(&init.dst_port) || init.initiate_tag == 0 {
            continue;
        }
        let to = SocketAddr::V4(SocketAddrV4::new(init.src, 0));
        let _ = socket.send_to(&probe::sctp_init_ack(&init, server_tag), &to.into());
    }
}

fn connect_all(targets: &[Target], timeout: Duration) {
    let probes: Vec<_> = targets
        .iter()
        .map(|target| {
            let target = *target;
            thread::spawn(move || probe_one(&target, timeout))
        })
        .collect();
    let mut out = String::new();
    for (target, handle) in targets.iter().zip(probes) {
        let (outcome, detail) = handle
            .join()
            .unwrap_or((Outcome::Error, "probe thread panicked".to_owned()));
        out.push_str(&probe::format_result(target, outcome, &detail));
        out.push('\n');
    }
    print!("{out}");
}

fn probe_one(target: &Target, timeout: Duration) -> (Outcome, String) {
    let result = match target.protocol {
        Protocol::Tcp => probe_tcp(target, timeout),
        Protocol::Udp => probe_udp(target, timeout),
        Protocol::Sctp => probe_sctp(target, timeout),
    };
    result.unwrap_or_else(|err| classify(&err))
}

fn classify(err: &std::io::Error) -> (Outcome, String) {
    let outcome = match err.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::Timeout,
        ErrorKind::ConnectionRefused
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable => Outcome::Refused,
        _ => Outcome::Error,
    };
    (outcome, err.to_string().replace(' ', "_"))
}

fn target_addr(target: &Target) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(target.ip, target.port))
}

fn probe_tcp(target: &Target, timeout: Duration) -> std::io::Result<(Outcome, String)> {
    TcpStream::connect_timeout(&target_addr(target), timeout)?;
    Ok((Outcome::Connected, String::new()))
}

fn probe_udp(target: &Target, timeout: Duration) -> std::io::Result<(Outcome, String)> {
    let socket = UdpSocket::bind(any(0))?;
    socket.connect(target_addr(target))?;
    socket.set_read_timeout(Some(timeout))?;
    let payload = format!("tortie-probe {}", random_u32());
    socket.send(payload.as_bytes())?;
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let len = socket.recv(&mut buf)?;
        if &buf[..len] == payload.as_bytes() {
            return Ok((Outcome::Connected, String::new()));
        }
    }
    Ok((Outcome::Timeout, String::new()))
}

fn probe_sctp(target: &Target, timeout: Duration) -> std::io::Result<(Outcome, String)> {
    let socket = raw_sctp_socket()?;
    // Connecting a raw socket makes it receive only from the target.
    socket.connect(&SocketAddr::V4(SocketAddrV4::new(target.ip, 0)).into())?;
    let tag = random_u32() | 1;
    let src_port = 32_768 + u16::try_from(random_u32() % 28_000).unwrap_or(0);
    socket.send(&probe::sctp_init(src_port, target.port, tag))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((Outcome::Timeout, String::new()));
        }
        socket.set_read_timeout(Some(left))?;
        let len = recv(&socket, &mut buf)?;
        if probe::parse_sctp(&buf[..len]).is_some_and(|reply| reply.answers(src_port, tag)) {
            return Ok((Outcome::Connected, String::new()));
        }
    }
}

/// Tags and ports only need to differ between concurrent probes, not to be secret.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    u32::try_from(hasher.finish() & u64::from(u32::MAX)).unwrap_or(0)
}
