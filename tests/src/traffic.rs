//! Traffic between lab hosts with real tools (`ping`, `iperf3`, `socat`), each returning an
//! error that shows what the tool printed, so a test failure reads like the terminal would.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::harness::{self, KillOnDrop};
use crate::lab::Lab;

/// Port of the iperf3 servers the helpers start.
pub const IPERF_PORT: u16 = 5201;
/// Port of the UDP echo servers the helpers start.
pub const UDP_ECHO_PORT: u16 = 5300;
/// How long a server may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// `what failed (status): stdout … stderr …`, for errors.
pub fn describe_failure(what: &str, out: &Output) -> String {
    format!(
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fails with the tool's output unless it exited 0.
pub fn check_success(what: &str, out: &Output) -> Result<()> {
    if out.status.success() {
        Ok(())
    } else {
        bail!("{}", describe_failure(what, out))
    }
}

/// `ping -c <count> -i 0.2 -W 2 <extra…> <dst>` from `from`; fails when ping does (no reply
/// came back, or `-M do` found the packet too big).
pub fn ping(lab: &Lab, from: &str, dst: &str, count: u32, extra: &[&str]) -> Result<()> {
    let count = count.to_string();
    let mut cmd = vec!["ping", "-c", &count, "-i", "0.2", "-W", "2"];
    cmd.extend_from_slice(extra);
    cmd.push(dst);
    let out = lab.exec(from, &cmd)?;
    check_success(&format!("`{}` in {from}", cmd.join(" ")), &out)
}

/// Starts a one-shot `iperf3 -s -1` in `target` and returns once it listens.
pub fn iperf3_server(lab: &Lab, target: &str) -> Result<KillOnDrop> {
    let port = IPERF_PORT.to_string();
    let server = KillOnDrop::new(lab.spawn(target, &["iperf3", "-s", "-1", "-p", &port])?);
    let filter = format!("sport = :{port}");
    harness::wait_for_output(lab, target, &["ss", "-Hltn", &filter], LISTEN_TIMEOUT)
        .with_context(|| format!("the iperf3 server in {target} did not start"))?;
    Ok(server)
}

/// `iperf3 -c <server_ip> -t <seconds> -J <extra…>` from `from`; fails unless it exits 0 and
/// prints its JSON report, which it returns.
pub fn iperf3_client(
    lab: &Lab,
    from: &str,
    server_ip: &str,
    seconds: u32,
    extra: &[&str],
) -> Result<Value> {
    let port = IPERF_PORT.to_string();
    let seconds = seconds.to_string();
    let mut cmd = vec!["iperf3", "-c", server_ip, "-p", &port, "-t", &seconds, "-J"];
    cmd.extend_from_slice(extra);
    let out = lab.exec(from, &cmd)?;
    check_success(&format!("iperf3 client {from} → {server_ip}"), &out)?;
    parse_iperf_json(&out)
}

/// The JSON report of an iperf3 run with `-J`.
pub fn parse_iperf_json(out: &Output) -> Result<Value> {
    serde_json::from_slice(&out.stdout).map_err(|err| {
        anyhow!(
            "iperf3 -J printed no JSON ({err}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `end.sum_received.bytes` of an iperf3 report.
pub fn received_bytes(report: &Value) -> Result<u64> {
    report["end"]["sum_received"]["bytes"]
        .as_u64()
        .ok_or_else(|| anyhow!("iperf3 JSON lacks end.sum_received.bytes: {report}"))
}

/// `(start s, bytes)` of every interval of an iperf3 report that starts at or after
/// `from_s` seconds (client time).
pub fn intervals_from(report: &Value, from_s: f64) -> Result<Vec<(f64, u64)>> {
    let intervals = report["intervals"]
        .as_array()
        .ok_or_else(|| anyhow!("iperf3 JSON lacks intervals: {report}"))?;
    Ok(intervals
        .iter()
        .filter_map(|i| Some((i["sum"]["start"].as_f64()?, i["sum"]["bytes"].as_u64()?)))
        .filter(|&(start, _)| start >= from_s)
        .collect())
}

/// A TCP stream of `seconds` from `from` to an iperf3 server in `to` (address `to_ip`), with
/// iperf3's default (large) writes plus `extra` client options. Both ends must exit 0; returns
/// the bytes received.
pub fn tcp_stream(
    lab: &Lab,
    from: &str,
    to: &str,
    to_ip: &str,
    seconds: u32,
    extra: &[&str],
) -> Result<u64> {
    let server = iperf3_server(lab, to)?;
    let report = iperf3_client(lab, from, to_ip, seconds, extra)?;
    let bytes = received_bytes(&report)?;
    let server_out = server
        .wait_output(Duration::from_secs(10))
        .with_context(|| format!("the iperf3 server in {to}"))?;
    check_success(&format!("iperf3 server in {to}"), &server_out)?;
    Ok(bytes)
}

/// Sends `payload` in one datagram from `from` to a `socat` echo server started in `to`
/// (address `to_ip`) and fails unless exactly the payload comes back.
pub fn udp_echo(lab: &Lab, from: &str, to: &str, to_ip: &str, payload: &[u8]) -> Result<()> {
    let listen = format!("UDP4-RECVFROM:{UDP_ECHO_PORT}");
    let _echo = KillOnDrop::new(lab.spawn(to, &["socat", "-T", "10", &listen, "EXEC:cat"])?);
    let filter = format!("sport = :{UDP_ECHO_PORT}");
    harness::wait_for_output(lab, to, &["ss", "-Hlun", &filter], LISTEN_TIMEOUT)
        .with_context(|| format!("the UDP echo server in {to} did not start"))?;
    let peer = format!("UDP4:{to_ip}:{UDP_ECHO_PORT}");
    let mut client = lab
        .command(from, &["socat", "-t", "3", "-T", "5", "-", &peer])?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting socat in {from}"))?;
    let stdin = client.stdin.take();
    let client = KillOnDrop::new(client);
    stdin
        .ok_or_else(|| anyhow!("socat in {from} has no stdin"))?
        .write_all(payload)
        .with_context(|| format!("writing the UDP payload to socat in {from}"))?;
    let reply = client
        .wait_output(Duration::from_secs(15))
        .with_context(|| format!("the UDP client in {from}"))?;
    check_success(&format!("socat UDP client {from} → {to_ip}"), &reply)?;
    if reply.stdout != payload {
        bail!(
            "the UDP echo {from} → {to_ip} did not come back unchanged: sent {:?}, got {:?}",
            String::from_utf8_lossy(payload),
            String::from_utf8_lossy(&reply.stdout)
        );
    }
    Ok(())
}
