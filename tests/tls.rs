//! TLS termination: handshakes from the rustls client, subscribe and publish over TLS,
//! certificate reload on SIGHUP with a subscriber connected, a refused bad certificate,
//! and plaintext on the TLS port.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fixture, form, token, Server};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

/// Accepts the test's self-signed certificates and remembers which one the server showed,
/// so a test can tell the certificate before and after a reload.
#[derive(Debug, Default)]
struct Recorder(Mutex<Option<Vec<u8>>>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
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

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects over TLS; returns the stream and the DER of the certificate the server showed.
fn connect(server: &Server) -> (Tls, Vec<u8>) {
    let recorder = Arc::new(Recorder::default());
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(recorder.clone())
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
        .unwrap();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let cert = recorder.0.lock().unwrap().clone().unwrap();
    (tls, cert)
}

fn der(pem_path: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(pem_path).unwrap().to_vec()
}

/// Reads until `needle` appears; returns everything read.
fn read_until(tls: &mut Tls, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {:?}",
            String::from_utf8_lossy(&got)
        );
        let n = tls.read(&mut buf).expect("TLS read");
        assert!(n > 0, "closed before {needle:?}");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn publish_tls(server: &Server, data: &str) -> String {
    let (mut tls, _) = connect(server);
    let body = form(&[("topic", "t"), ("data", data)]);
    let req = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token(r#"{"mercure":{"publish":["*"]}}"#),
        body.len()
    );
    tls.write_all(req.as_bytes()).unwrap();
    let resp = read_until(&mut tls, "urn:uuid:");
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    resp.rsplit("\r\n\r\n").next().unwrap().to_owned()
}

/// Copies the fixture pair `name` to a private directory the test can overwrite.
fn cert_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ssegate-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("tls-a-cert.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(fixture("tls-a-key.pem"), dir.join("key.pem")).unwrap();
    dir
}

fn tls_server(dir: &std::path::Path) -> Server {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    Server::start(&[
        "--workers",
        "2",
        "--header-timeout",
        "1s",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
}

#[test]
fn subscribe_and_publish_over_tls() {
    let dir = cert_dir("rt");
    let server = tls_server(&dir);
    let (mut sub, cert) = connect(&server);
    assert_eq!(cert, der(&fixture("tls-a-cert.pem")));
    sub.write_all(b"GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_until(&mut sub, "\r\n\r\n:\n");
    assert!(head.starts_with("HTTP/1.1 200 OK"));
    let id = publish_tls(&server, "over tls");
    let got = read_until(&mut sub, "data: over tls\n\n");
    assert!(got.contains(&format!("id: {id}\n")), "{got}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let dir = cert_dir("reload");
    let server = tls_server(&dir);
    let (mut sub, before) = connect(&server);
    assert_eq!(before, der(&fixture("tls-a-cert.pem")));
    sub.write_all(b"GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_until(&mut sub, "\r\n\r\n:\n");

    // A bad certificate is refused: the old one stays.
    std::fs::write(dir.join("cert.pem"), "not a certificate").unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    let (_, still) = connect(&server);
    assert_eq!(still, before, "a bad certificate replaced the good one");

    // A good new pair is taken for new handshakes.
    std::fs::copy(fixture("tls-b-cert.pem"), dir.join("cert.pem")).unwrap();
    std::fs::copy(fixture("tls-b-key.pem"), dir.join("key.pem")).unwrap();
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    let wanted = der(&fixture("tls-b-cert.pem"));
    let deadline = Instant::now() + Duration::from_secs(5);
    // The reload reaches each core through its channel: poll, bounded, until both show it.
    let mut fresh = 0;
    while fresh < 6 {
        assert!(
            Instant::now() < deadline,
            "new certificate not served within 5 s"
        );
        let (_, cert) = connect(&server);
        fresh = if cert == wanted { fresh + 1 } else { 0 };
    }
    // The subscriber from before the reload is still connected and served.
    let id = publish_tls(&server, "after reload");
    let got = read_until(&mut sub, "data: after reload\n\n");
    assert!(got.contains(&format!("id: {id}\n")));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn plaintext_on_the_tls_port_is_closed_cleanly() {
    let dir = cert_dir("plain");
    let server = tls_server(&dir);
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let mut total = 0;
    let closed = loop {
        match plain.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => total += n, // a TLS alert, if any
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    assert!(closed, "plaintext connection left open");
    assert!(total < 64, "unexpected reply of {total} bytes");
    // Still serving TLS.
    publish_tls(&server, "still fine");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_drained_tls_stream_ends_with_close_notify() {
    let dir = cert_dir("drain");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut server = Server::start(&[
        "--workers",
        "1",
        "--drain-period",
        "100ms",
        "--shutdown-timeout",
        "2s",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let (mut sub, _) = connect(&server);
    sub.write_all(b"GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_until(&mut sub, "\r\n\r\n:\n");
    server.sigterm();
    // rustls reports a clean end (close_notify) as Ok(0) and a bare FIN as an error.
    let mut buf = [0u8; 4096];
    loop {
        match sub.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue, // the retry: hint
            Err(e) => panic!("stream ended without close_notify: {e}"),
        }
    }
    assert!(server.wait_exit(Duration::from_secs(3)).is_some());
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether `tool` runs (`tool args…` succeeds).
fn have(tool: &str, args: &[&str]) -> bool {
    std::process::Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Stock clients that verify the certificate for real: the fixture is self-signed with
/// `localhost` and `127.0.0.1` in its subjectAltName, so it is given as its own CA and
/// hostname verification passes honestly (no `-k`). Skipped, with a message, when the tool
/// is missing; CI installs both.
#[test]
fn curl_and_openssl_verify_the_certificate() {
    use std::process::{Command, Stdio};
    let dir = cert_dir("stock");
    let server = tls_server(&dir);
    let port = server.addr.port();
    let ca = fixture("tls-a-cert.pem");
    let url = format!("https://localhost:{port}/.well-known/mercure");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let auth = format!(
        "Authorization: Bearer {}",
        token(r#"{"mercure":{"publish":["*"]}}"#)
    );

    if have("curl", &["--version"]) {
        let publish = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                &ca,
                "--resolve",
                &resolve,
            ])
            .args(["-H", &auth, "-d", "topic=t", "-d", "data=via curl", &url])
            .output()
            .unwrap();
        let id = String::from_utf8_lossy(&publish.stdout).into_owned();
        assert!(
            publish.status.success() && id.starts_with("urn:uuid:"),
            "curl publish: {id} {}",
            String::from_utf8_lossy(&publish.stderr)
        );
        // The stream never ends by itself: curl stops at --max-time (exit 28) after the head
        // and the replay of the event just published.
        let subscribe = Command::new("curl")
            // HTTP/1.1 asked for: curl would choose h2, tested in tests/http2.rs.
            .args([
                "-sS",
                "-i",
                "-N",
                "--http1.1",
                "--max-time",
                "2",
                "--cacert",
                &ca,
            ])
            .args([
                "--resolve",
                &resolve,
                &format!("{url}?topic=t&lastEventID=earliest"),
            ])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&subscribe.stdout);
        assert_eq!(subscribe.status.code(), Some(28), "curl subscribe: {out}");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Type: text/event-stream\r\n"), "{out}");
        assert!(
            out.contains(&format!("id: {id}\ndata: via curl\n\n")),
            "{out}"
        );
    } else {
        eprintln!("skipped the curl half: curl is not on PATH");
    }

    if have("openssl", &["version"]) {
        let body = form(&[("topic", "t"), ("data", "via openssl")]);
        let request = format!(
            "POST /.well-known/mercure HTTP/1.1\r\nHost: localhost\r\n{auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-verify_return_error"])
            .args(["-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .args(["-CAfile", &ca])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The server closes after its answer (Connection: close), which ends s_client.
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(request.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.starts_with("HTTP/1.1 200 OK\r\n"),
            "openssl s_client: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("urn:uuid:"), "{text}");
    } else {
        eprintln!("skipped the openssl half: openssl is not on PATH");
    }
    let _ = std::fs::remove_dir_all(dir);
}
