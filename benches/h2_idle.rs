//! Memory of idle subscribers over TLS: HTTP/1.1 (one connection each) against HTTP/2 (one
//! connection with one stream, and each additional stream on a connection), measured on the
//! gateway's VmRSS in the same run.
//!
//! ```sh
//! cargo bench --bench h2_idle -- --conns 2000 --streams 20 --runs 3 \
//!     --out bench-results/h2-idle-$(date -u +%F).md
//! ```
//!
//! Each run of each mode starts a fresh gateway (one worker, the test certificate), opens a
//! warm-up batch, reads VmRSS (baseline), opens the measured subscribers, waits until every
//! one has its response head and the opening `:` comment (registered), waits for VmRSS to
//! settle and reports (loaded - baseline) / count. Modes:
//! - `h1-tls`: `conns` HTTP/1.1 subscribers over TLS, one connection each;
//! - `h2-conn`: `conns` HTTP/2 connections with one subscriber stream each;
//! - `h2-stream`: `conns / streams` HTTP/2 connections with one stream each as the
//!   baseline, then `streams - 1` more streams on each: the cost of a stream alone.
//!
//! Kernel socket memory is not in the process's RSS: these are the gateway's own bytes.
//! Loopback only; the client runs in this process (its memory is not measured).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WARMUP: usize = 100;
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

struct Gateway {
    child: Child,
    port: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Gateway {
    use std::io::BufRead;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssegate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--admin-addr",
            "off",
        ])
        .args(["--tls-cert", &format!("{dir}/tls-a-cert.pem")])
        .args(["--tls-key", &format!("{dir}/tls-a-key.pem")])
        .args(["--anonymous", "true", "--log-level", "warn"])
        .args(["--heartbeat-interval", "1h", "--max-connections", "1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ssegate");
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in out.lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("ssegate listening on ") {
            let addr = rest.split_whitespace().next().unwrap();
            let port = addr.rsplit(':').next().unwrap().parse().unwrap();
            return Gateway { child, port };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("ssegate did not start");
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// VmRSS once three reads 200 ms apart agree (at most 10 s).
async fn settled_rss(pid: u32) -> u64 {
    let until = Instant::now() + Duration::from_secs(10);
    let (mut last, mut same) = (rss_kib(pid), 0);
    while same < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = rss_kib(pid);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

fn tls_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls(port: u16, config: &Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// An HTTP/1.1 subscriber over TLS, registered.
async fn h1(port: u16, config: &Arc<rustls::ClientConfig>) -> Tls {
    let mut s = tls(port, config).await;
    s.write_all(b"GET /.well-known/mercure?topic=idle HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(6).any(|w| w == b"\r\n\r\n:\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before registration");
        got.extend_from_slice(&buf[..n]);
    }
    s
}

/// An HTTP/2 connection.
async fn h2(port: u16, config: &Arc<rustls::ClientConfig>) -> h2::client::SendRequest<Bytes> {
    let s = tls(port, config).await;
    let (send, conn) = h2::client::handshake(s).await.unwrap();
    tokio::spawn(conn);
    send
}

/// A subscriber stream on `send`, registered.
async fn stream(send: &h2::client::SendRequest<Bytes>) -> h2::RecvStream {
    let mut send = send.clone().ready().await.unwrap();
    let req = http::Request::get("https://localhost/.well-known/mercure?topic=idle")
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    let mut body = resp.await.unwrap().into_body();
    let first = body.data().await.unwrap().unwrap();
    assert_eq!(&first[..], b":\n");
    body
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    H1Tls,
    H2Conn,
    H2Stream,
}

/// One run of `mode`: bytes per measured subscriber (connection or stream).
async fn run(mode: Mode, conns: usize, streams: usize) -> (f64, usize) {
    let gw = start();
    let pid = gw.child.id();
    let h1cfg = tls_config(&[b"http/1.1"]);
    let h2cfg = tls_config(&[b"h2"]);
    let mut keep_h1 = Vec::new();
    let mut keep_h2 = Vec::new();
    let mut keep_streams = Vec::new();
    // Warm-up: one-time costs (buffers, tables) of both protocols.
    for _ in 0..WARMUP {
        keep_h1.push(h1(gw.port, &h1cfg).await);
        let c = h2(gw.port, &h2cfg).await;
        keep_streams.push(stream(&c).await);
        keep_h2.push(c);
    }
    let (measured, base) = match mode {
        Mode::H1Tls => {
            let base = settled_rss(pid).await;
            for _ in 0..conns {
                keep_h1.push(h1(gw.port, &h1cfg).await);
            }
            (conns, base)
        }
        Mode::H2Conn => {
            let base = settled_rss(pid).await;
            for _ in 0..conns {
                let c = h2(gw.port, &h2cfg).await;
                keep_streams.push(stream(&c).await);
                keep_h2.push(c);
            }
            (conns, base)
        }
        Mode::H2Stream => {
            let n = (conns / streams).max(1);
            let mut mine = Vec::new();
            for _ in 0..n {
                let c = h2(gw.port, &h2cfg).await;
                keep_streams.push(stream(&c).await);
                mine.push(c);
            }
            let base = settled_rss(pid).await;
            for c in &mine {
                for _ in 1..streams {
                    keep_streams.push(stream(c).await);
                }
            }
            keep_h2.extend(mine);
            (n * (streams - 1), base)
        }
    };
    let loaded = settled_rss(pid).await;
    let per = (loaded.saturating_sub(base) * 1024) as f64 / measured as f64;
    drop((keep_h1, keep_h2, keep_streams));
    (per, measured)
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and clippy's builds
    }
    let conns: usize = arg(&args, "--conns", "2000").parse().unwrap();
    let streams: usize = arg(&args, "--streams", "20").parse().unwrap();
    let runs: usize = arg(&args, "--runs", "3").parse().unwrap();
    let out = arg(&args, "--out", "");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for mode in [Mode::H1Tls, Mode::H2Conn, Mode::H2Stream] {
        let mut per = Vec::new();
        let mut n = 0;
        for r in 0..runs {
            let (b, m) = rt
                .block_on(async { tokio::time::timeout(LIMIT, run(mode, conns, streams)).await })
                .expect("run timed out");
            eprintln!("{mode:?} run {r}: {b:.0} bytes each over {m}");
            per.push(b);
            n = m;
        }
        rows.push((mode, median(per.clone()), per, n));
    }
    let commit = sh("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let cpu = sh(
        "sh",
        &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
    );
    let mut md = format!(
        "# Idle subscribers over TLS: HTTP/1.1 and HTTP/2\n\n\
         - command: `cargo bench --bench h2_idle -- --conns {conns} --streams {streams} --runs {runs}`\n\
         - date: {}\n- commit: {commit}{}\n- machine: {} cores,{cpu}, {}\n\
         - gateway: one worker, TLS (the test certificate), heartbeat 1h; client in the bench process\n\
         - figure: (VmRSS loaded - VmRSS baseline) / measured, after {WARMUP} warm-up subscribers of each protocol; median of {runs} runs (each run a fresh gateway)\n\n\
         | what | measured | bytes each (median) | runs |\n|---|---:|---:|---|\n",
        sh("date", &["-u", "+%FT%H%MZ"]),
        if dirty { " (with uncommitted changes)" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sh("uname", &["-sr"]),
    );
    for (mode, med, per, n) in &rows {
        let what = match mode {
            Mode::H1Tls => "HTTP/1.1 over TLS: a connection with its subscriber",
            Mode::H2Conn => "HTTP/2 over TLS: a connection with one subscriber stream",
            Mode::H2Stream => "HTTP/2: each additional subscriber stream on a connection",
        };
        let runs: Vec<String> = per.iter().map(|b| format!("{b:.0}")).collect();
        md.push_str(&format!(
            "| {what} | {n} | {med:.0} | {} |\n",
            runs.join(", ")
        ));
    }
    println!("{md}");
    if !out.is_empty() {
        std::fs::write(&out, md).unwrap();
    }
}
