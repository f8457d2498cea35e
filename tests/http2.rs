//! HTTP/2, from a real client (the `h2` crate's, over TLS with ALPN and over h2c with prior
//! knowledge; and curl where installed): many subscriptions on one connection, publishes
//! multiplexed on another, resume, errors and CORS, a slow stream reset while its siblings
//! keep receiving, GOAWAY at shutdown, and the flood guard.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{admin_get, enc, fixture, form, metric_sum, token, Server};
use h2::client::SendRequest;
use h2::RecvStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn tls_server(extra: &[&str]) -> Server {
    let (cert, key) = (fixture("tls-a-cert.pem"), fixture("tls-a-key.pem"));
    let mut args = vec![
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--anonymous",
        "true",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn h2c_server(extra: &[&str]) -> Server {
    let mut args = vec!["--http2-cleartext", "true", "--anonymous", "true"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Accepts the fixture's self-signed certificate.
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

/// A client connection; its task is spawned, and ends with how the connection ended.
struct Client {
    send: SendRequest<Bytes>,
    conn: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

fn client_builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    // Large windows, as browsers use: the server's own limits are what is tested.
    b.initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20);
    b
}

/// HTTP/2 over TLS, ALPN `h2` offered beside `http/1.1`; fails unless the server chose h2.
async fn connect_tls(server: &Server, builder: h2::client::Builder) -> Client {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = builder.handshake(tls).await.unwrap();
    Client {
        send,
        conn: tokio::spawn(conn),
    }
}

/// HTTP/2 with prior knowledge on the plaintext port.
async fn connect_h2c(server: &Server, builder: h2::client::Builder) -> Client {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (send, conn) = builder.handshake(tcp).await.unwrap();
    Client {
        send,
        conn: tokio::spawn(conn),
    }
}

/// A response: status, headers, and the body stream.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: RecvStream,
}

async fn request(
    client: &mut Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Answer {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let send = client.send.clone();
    let mut send = timeout(LIMIT, send.ready()).await.unwrap().unwrap();
    let (resp, mut out) = send
        .send_request(req.body(()).unwrap(), body.is_none())
        .unwrap();
    if let Some(b) = body {
        out.send_data(Bytes::from(b), true).unwrap();
    }
    let resp = timeout(LIMIT, resp).await.unwrap().unwrap();
    let (head, body) = resp.into_parts();
    Answer {
        status: head.status.as_u16(),
        headers: head
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect(),
        body,
    }
}

async fn body_text(a: &mut Answer) -> String {
    let mut out = Vec::new();
    while let Some(chunk) = timeout(LIMIT, a.body.data()).await.unwrap() {
        let chunk = chunk.unwrap();
        let _ = a.body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    String::from_utf8(out).unwrap()
}

async fn subscribe(client: &mut Client, query: &str, headers: &[(&str, &str)]) -> Events {
    let a = request(
        client,
        "GET",
        &format!("/.well-known/mercure?{query}"),
        headers,
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "text/event-stream");
    Events {
        headers: a.headers,
        body: a.body,
        buf: String::new(),
        release: true,
    }
}

async fn publish(client: &mut Client, server: &Server, pairs: &[(&str, &str)]) -> (u16, String) {
    let auth = format!("Bearer {}", server.token);
    let mut a = request(
        client,
        "POST",
        "/.well-known/mercure",
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(form(pairs)),
    )
    .await;
    (a.status, body_text(&mut a).await)
}

/// A subscriber stream's events.
struct Events {
    headers: HashMap<String, String>,
    body: RecvStream,
    buf: String,
    /// Give the window back as data is read (a reader that does not is a stalled one).
    release: bool,
}

#[derive(Debug)]
enum Got {
    Event { id: String, data: String },
    End,
    Reset(Option<h2::Reason>),
    Timeout,
}

impl Events {
    async fn next(&mut self, limit: Duration) -> Got {
        loop {
            while let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let (mut id, mut data) = (None, Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_owned());
                    }
                }
                if let Some(id) = id {
                    return Got::Event {
                        id,
                        data: data.join("\n"),
                    };
                }
            }
            match timeout(limit, self.body.data()).await {
                Err(_) => return Got::Timeout,
                Ok(None) => return Got::End,
                Ok(Some(Err(e))) => return Got::Reset(e.reason()),
                Ok(Some(Ok(chunk))) => {
                    if self.release {
                        let _ = self.body.flow_control().release_capacity(chunk.len());
                    }
                    self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
                }
            }
        }
    }

    async fn event(&mut self) -> (String, String) {
        match self.next(LIMIT).await {
            Got::Event { id, data } => (id, data),
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

fn metrics(server: &Server) -> String {
    admin_get(server, "/metrics").body
}

#[test]
fn twenty_subscriptions_share_one_tls_connection_and_publishes_multiplex_on_another() {
    let server = tls_server(&[]);
    run(async {
        let mut subs = connect_tls(&server, client_builder()).await;
        let mut streams = Vec::new();
        for i in 0..20 {
            // Half on a shared topic, half on their own, to see the routing per stream.
            let q = if i % 2 == 0 {
                "topic=shared".to_owned()
            } else {
                format!("topic=shared&topic=own-{i}")
            };
            streams.push(subscribe(&mut subs, &q, &[]).await);
        }
        let mut pubs = connect_tls(&server, client_builder()).await;
        // Ten publishes in flight at once on one connection.
        let mut sent = Vec::new();
        let auth = format!("Bearer {}", server.token);
        let mut pending = Vec::new();
        for n in 0..10 {
            let mut send = pubs.send.clone().ready().await.unwrap();
            let req = http::Request::post("https://localhost/.well-known/mercure")
                .header("authorization", &auth)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(())
                .unwrap();
            let (resp, mut body) = send.send_request(req, false).unwrap();
            body.send_data(
                Bytes::from(form(&[("topic", "shared"), ("data", &format!("e{n}"))])),
                true,
            )
            .unwrap();
            pending.push(resp);
        }
        for resp in pending {
            let resp = timeout(LIMIT, resp).await.unwrap().unwrap();
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            let mut id = Vec::new();
            while let Some(c) = body.data().await {
                id.extend_from_slice(&c.unwrap());
            }
            sent.push(String::from_utf8(id).unwrap());
        }
        // Every stream gets every event, in the order the hub gave them.
        let mut order = Vec::new();
        for (i, s) in streams.iter_mut().enumerate() {
            let mut got = Vec::new();
            for _ in 0..10 {
                got.push(s.event().await.0);
            }
            if i == 0 {
                order = got.clone();
                let mut a = got.clone();
                a.sort();
                let mut b = sent.clone();
                b.sort();
                assert_eq!(a, b, "the ids the publishers were given");
            }
            assert_eq!(got, order, "stream {i}");
        }
        // Only the streams asking for it get an event on their own topic.
        let (st, _) = publish(&mut pubs, &server, &[("topic", "own-3"), ("data", "x")]).await;
        assert_eq!(st, 200);
        match streams[3].next(LIMIT).await {
            Got::Event { data, .. } => assert_eq!(data, "x"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            streams[2].next(Duration::from_millis(300)).await,
            Got::Timeout
        ));
        let text = metrics(&server);
        assert_eq!(metric_sum(&text, "ssegate_http2_connections_total", ""), 2);
        assert_eq!(metric_sum(&text, "ssegate_connections_open", ""), 2);
        assert_eq!(metric_sum(&text, "ssegate_subscribers", ""), 20);
        assert_eq!(
            metric_sum(&text, "ssegate_http2_streams_total", ""),
            20 + 11
        );
    });
}

#[test]
fn h2c_with_prior_knowledge_beside_http11_on_the_same_port() {
    let server = h2c_server(&[]);
    run(async {
        let mut c = connect_h2c(&server, client_builder()).await;
        let mut s = subscribe(&mut c, "topic=a", &[]).await;
        // An HTTP/1.1 publisher on the same port.
        let id = server.publish(&[("topic", "a"), ("data", "over 1.1")]);
        assert_eq!(s.event().await, (id, "over 1.1".to_owned()));
        let (st, id2) = publish(&mut c, &server, &[("topic", "a"), ("data", "over h2")]).await;
        assert_eq!(st, 200);
        assert_eq!(s.event().await, (id2, "over h2".to_owned()));
    });
}

#[test]
fn resume_errors_cors_and_the_debug_page_over_http2() {
    let server = tls_server(&["--cors-origin", "https://app.example", "--ui", "true"]);
    run(async {
        let mut c = connect_tls(&server, client_builder()).await;
        let mut ids = Vec::new();
        for n in 0..5 {
            let (st, id) =
                publish(&mut c, &server, &[("topic", "r"), ("data", &n.to_string())]).await;
            assert_eq!(st, 200);
            ids.push(id);
        }
        // Resume after the second event: the last three, then live.
        let mut s = subscribe(&mut c, "topic=r", &[("last-event-id", &ids[1])]).await;
        for id in &ids[2..] {
            assert_eq!(&s.event().await.0, id);
        }
        assert_eq!(s.headers["last-event-id"], ids[1]);
        let mut q = subscribe(
            &mut c,
            &format!("topic=r&lastEventID={}", enc(&ids[3])),
            &[],
        )
        .await;
        assert_eq!(q.event().await.0, ids[4]);

        // Errors, with their reasons, on their own streams; the connection goes on.
        let mut a = request(&mut c, "GET", "/.well-known/mercure", &[], None).await;
        assert_eq!(a.status, 400);
        assert!(body_text(&mut a).await.contains("topic"));
        let mut a = request(
            &mut c,
            "POST",
            "/.well-known/mercure",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some("topic=r&data=x".into()),
        )
        .await;
        assert_eq!(a.status, 401);
        assert_eq!(a.headers["www-authenticate"], "Bearer");
        body_text(&mut a).await;
        let a = request(&mut c, "DELETE", "/.well-known/mercure", &[], None).await;
        assert_eq!(a.status, 405);
        assert_eq!(a.headers["allow"], "GET, POST, OPTIONS");
        let a = request(&mut c, "GET", "/nope", &[], None).await;
        assert_eq!(a.status, 404);
        let auth = format!("Bearer {}", server.token);
        let big = "x".repeat(2 << 20);
        let mut a = request(
            &mut c,
            "POST",
            "/.well-known/mercure",
            &[
                ("authorization", &auth),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some(format!("topic=r&data={big}")),
        )
        .await;
        assert_eq!(a.status, 413);
        body_text(&mut a).await;

        // CORS: the preflight, and the stream's own headers.
        let a = request(
            &mut c,
            "OPTIONS",
            "/.well-known/mercure",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "GET"),
            ],
            None,
        )
        .await;
        assert!(a.status == 204 || a.status == 200, "{}", a.status);
        assert_eq!(
            a.headers["access-control-allow-origin"],
            "https://app.example"
        );
        let s = subscribe(&mut c, "topic=r", &[("origin", "https://app.example")]).await;
        assert_eq!(
            s.headers["access-control-allow-origin"],
            "https://app.example"
        );

        let mut a = request(&mut c, "GET", "/", &[], None).await;
        assert_eq!(a.status, 200);
        assert!(body_text(&mut a).await.contains("EventSource"));

        // A subscriber token in a cookie, split as HTTP/2 clients may send it.
        let sub_token = token(r#"{"mercure":{"subscribe":["*"]}}"#);
        let mut api = request(
            &mut c,
            "GET",
            "/.well-known/mercure/subscriptions",
            &[
                ("cookie", "a=b"),
                ("cookie", &format!("mercureAuthorization={sub_token}")),
            ],
            None,
        )
        .await;
        // The subscriptions API is off by default: 404, after the token was read.
        assert_eq!(api.status, 404);
        body_text(&mut api).await;
    });
    let text = metrics(&server);
    assert!(metric_sum(&text, "ssegate_requests_refused_total", "status=\"400\"") >= 1);
    assert!(metric_sum(&text, "ssegate_publish_errors_total", "status=\"413\"") >= 1);
}

#[test]
fn a_stalled_stream_is_reset_while_its_siblings_keep_receiving() {
    // 8 KiB events; a stream that does not read has its 64 KiB window closed after eight,
    // then a queue that passes 64 KiB: reset, counted; the fast streams get all 60.
    let server = tls_server(&["--max-queued-bytes", "65536"]);
    run(async {
        let mut builder = client_builder();
        builder.initial_window_size(65_535);
        let mut c = connect_tls(&server, builder).await;
        let mut slow = subscribe(&mut c, "topic=big", &[]).await;
        slow.release = false;
        let mut fast: Vec<Events> = Vec::new();
        for _ in 0..3 {
            fast.push(subscribe(&mut c, "topic=big", &[]).await);
        }
        let mut p = connect_tls(&server, client_builder()).await;
        let data = "y".repeat(8 * 1024);
        let mut got = vec![0; fast.len()];
        for n in 0..60 {
            let (st, _) = publish(&mut p, &server, &[("topic", "big"), ("data", &data)]).await;
            assert_eq!(st, 200, "publish {n}");
            for (i, f) in fast.iter_mut().enumerate() {
                let (_, d) = f.event().await;
                assert_eq!(d.len(), data.len());
                got[i] += 1;
            }
        }
        assert_eq!(got, vec![60; 3]);
        // The slow stream reads what it had been given, then sees the reset.
        slow.release = true;
        let mut events = 0;
        let end = loop {
            match slow.next(LIMIT).await {
                Got::Event { .. } => events += 1,
                other => break other,
            }
        };
        assert!(
            matches!(end, Got::Reset(Some(h2::Reason::CANCEL))),
            "{end:?}"
        );
        assert!(events < 60, "the slow stream got {events}");
        // The connection itself is fine: a new stream on it works.
        let mut again = subscribe(&mut c, "topic=big", &[]).await;
        publish(&mut p, &server, &[("topic", "big"), ("data", "small")]).await;
        assert_eq!(again.event().await.1, "small");
    });
    let text = metrics(&server);
    assert!(metric_sum(&text, "ssegate_http2_streams_reset_total", "") >= 1);
    assert!(metric_sum(&text, "ssegate_slow_consumer_disconnects_total", "") >= 1);
}

#[test]
fn shutdown_sends_goaway_and_ends_every_stream_after_its_events() {
    let mut server = h2c_server(&["--drain-period", "200ms"]);
    run(async {
        let mut c = connect_h2c(&server, client_builder()).await;
        let mut a = subscribe(&mut c, "topic=s", &[]).await;
        let mut b = subscribe(&mut c, "topic=s", &[]).await;
        let id = server.publish(&[("topic", "s"), ("data", "last")]);
        assert_eq!(a.event().await.0, id);
        assert_eq!(b.event().await.0, id);
        server.sigterm();
        for s in [&mut a, &mut b] {
            let end = s.next(LIMIT).await;
            assert!(matches!(end, Got::End), "{end:?}");
        }
        // The connection ends with the server's GOAWAY (NO_ERROR), not a reset.
        let ended = timeout(LIMIT, &mut c.conn).await.unwrap().unwrap();
        match ended {
            Ok(()) => {}
            Err(e) => {
                assert!(
                    e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR),
                    "{e:?}"
                )
            }
        }
    });
    assert!(server.wait_exit(LIMIT).is_some_and(|s| s.success()));
}

/// Reads what the server sends until it closes; returns the GOAWAY error codes seen.
async fn goaways(mut tcp: TcpStream) -> Vec<u32> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match timeout(LIMIT, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server did not close the flooding connection"),
        }
    }
    let mut codes = Vec::new();
    let mut at = 0;
    while at + 9 <= all.len() {
        let len = u32::from_be_bytes([0, all[at], all[at + 1], all[at + 2]]) as usize;
        if all[at + 3] == 0x7 && at + 9 + 8 <= all.len() {
            let p = &all[at + 9 + 4..at + 9 + 8];
            codes.push(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
        }
        at += 9 + len;
    }
    codes
}

fn raw_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn ping_and_settings_floods_and_rapid_resets_are_answered_with_enhance_your_calm() {
    let server = h2c_server(&[]);
    run(async {
        for kind in [0x6u8, 0x4] {
            let mut tcp = TcpStream::connect(server.addr).await.unwrap();
            let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            bytes.extend(raw_frame(0x4, 0, 0, &[]));
            for _ in 0..1000 {
                let payload: &[u8] = if kind == 0x6 { &[0; 8] } else { &[] };
                bytes.extend(raw_frame(kind, 0, 0, payload));
            }
            tcp.write_all(&bytes).await.unwrap();
            let codes = goaways(tcp).await;
            assert!(codes.contains(&0xb), "kind {kind}: GOAWAY codes {codes:?}");
        }
        // Rapid reset: streams opened and cancelled at once, far past the limit. HEADERS
        // is three indexed HPACK fields (GET, http, "/"), then RST_STREAM (CANCEL).
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(raw_frame(0x4, 0, 0, &[]));
        for n in 0..2000u32 {
            let id = 1 + 2 * n;
            bytes.extend(raw_frame(0x1, 0x5, id, &[0x82, 0x86, 0x84]));
            bytes.extend(raw_frame(0x3, 0, id, &8u32.to_be_bytes()));
        }
        // The server may close before it has read it all.
        let _ = tcp.write_all(&bytes).await;
        let codes = goaways(tcp).await;
        assert!(codes.contains(&0xb), "rapid reset: GOAWAY codes {codes:?}");
        // The gateway still serves others.
        let mut ok = connect_h2c(&server, client_builder()).await;
        let (st, _) = publish(&mut ok, &server, &[("topic", "x"), ("data", "y")]).await;
        assert_eq!(st, 200);
    });
    assert_eq!(
        metric_sum(&metrics(&server), "ssegate_http2_flood_closes_total", ""),
        3
    );
}

/// Frames read from `tcp` until `done` says enough (or LIMIT passes): (type, flags, stream,
/// payload) each. The connection stays open: subscriber streams do not end.
async fn frames_until(
    tcp: &mut TcpStream,
    done: impl Fn(&[(u8, u8, u32, Vec<u8>)]) -> bool,
) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let (mut raw, mut frames) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !done(&frames) {
        let n = match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            other => panic!("connection ended or stalled ({other:?}); frames {frames:?}"),
        };
        raw.extend_from_slice(&buf[..n]);
        while raw.len() >= 9 {
            let len = u32::from_be_bytes([0, raw[0], raw[1], raw[2]]) as usize;
            if raw.len() < 9 + len {
                break;
            }
            let id = u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff;
            frames.push((raw[3], raw[4], id, raw[9..9 + len].to_vec()));
            raw.drain(..9 + len);
        }
    }
    frames
}

/// A subscribe request's HEADERS block: GET, http, then `:path` and `:authority` as
/// literals without indexing (HPACK, no Huffman coding).
fn subscribe_headers(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"localhost");
    block
}

#[test]
fn streams_past_max_concurrent_streams_are_refused_and_a_closed_one_frees_its_slot() {
    let server = h2c_server(&["--http2-max-concurrent-streams", "2"]);
    run(async {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(raw_frame(0x4, 0, 0, &[]));
        let block = subscribe_headers("/.well-known/mercure?topic=m");
        for id in [1u32, 3, 5] {
            bytes.extend(raw_frame(0x1, 0x5, id, &block));
        }
        tcp.write_all(&bytes).await.unwrap();
        let is = |f: &(u8, u8, u32, Vec<u8>), kind: u8, id: u32| f.0 == kind && f.2 == id;
        let frames = frames_until(&mut tcp, |fs| {
            [1, 3].iter().all(|&id| fs.iter().any(|f| is(f, 0x1, id)))
                && fs.iter().any(|f| is(f, 0x3, 5))
        })
        .await;
        // The server announced the limit, answered the first two, refused the third.
        let settings = frames.iter().find(|f| f.0 == 0x4 && f.1 & 1 == 0).unwrap();
        let announced = settings.3.chunks(6).find(|c| c[..2] == [0, 3]).unwrap();
        assert_eq!(u32::from_be_bytes(announced[2..6].try_into().unwrap()), 2);
        let reset = frames.iter().find(|f| is(f, 0x3, 5)).unwrap();
        assert_eq!(reset.3, 0x7u32.to_be_bytes(), "REFUSED_STREAM");
        assert!(!frames.iter().any(|f| is(f, 0x1, 5)));

        // Closing stream 1 frees a slot: the next stream is answered.
        let mut more = raw_frame(0x3, 0, 1, &8u32.to_be_bytes());
        more.extend(raw_frame(0x1, 0x5, 7, &block));
        tcp.write_all(&more).await.unwrap();
        let frames = frames_until(&mut tcp, |fs| {
            fs.iter().any(|f| is(f, 0x1, 7) || is(f, 0x3, 7))
        })
        .await;
        assert!(frames.iter().any(|f| is(f, 0x1, 7)), "{frames:?}");
        // The refusals cost nothing else: the gateway still serves.
        let mut ok = connect_h2c(&server, client_builder()).await;
        let (st, _) = publish(&mut ok, &server, &[("topic", "m"), ("data", "y")]).await;
        assert_eq!(st, 200);
    });
}

#[test]
fn a_connection_that_does_not_answer_pings_is_closed() {
    let server = h2c_server(&["--http2-keepalive", "200ms"]);
    run(async {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(raw_frame(0x4, 0, 0, &[]));
        // A subscriber stream, so that the connection is not merely idle.
        bytes.extend(raw_frame(
            0x1,
            0x5,
            1,
            &subscribe_headers("/.well-known/mercure?topic=p"),
        ));
        tcp.write_all(&bytes).await.unwrap();
        let frames = frames_until(&mut tcp, |fs| fs.iter().any(|f| f.0 == 0x4 && f.1 == 0)).await;
        assert!(frames.iter().any(|f| f.0 == 0x4 && f.1 == 0));
        tcp.write_all(&raw_frame(0x4, 0x1, 0, &[])).await.unwrap();
        // Then silence: the server PINGs, gets no ACK, and closes the connection.
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match timeout(LIMIT, tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                Err(_) => panic!("a connection that ignores PINGs was kept open"),
            }
        }
        let mut at = 0;
        let mut pings = 0;
        while at + 9 <= seen.len() {
            let len = u32::from_be_bytes([0, seen[at], seen[at + 1], seen[at + 2]]) as usize;
            pings += usize::from(seen[at + 3] == 0x6 && seen[at + 4] & 1 == 0);
            at += 9 + len;
        }
        assert!(pings >= 1, "no PING before the close");
    });
    assert_eq!(
        metric_sum(
            &metrics(&server),
            "ssegate_connections_closed_total",
            "reason=\"ping_timeout\""
        ),
        1
    );
}

#[test]
fn curl_speaks_http2_over_tls_and_with_prior_knowledge() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not installed: skipped");
        return;
    }
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-i", "--max-time", "5"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tls = tls_server(&[]);
    let auth = format!("Authorization: Bearer {}", tls.token);
    let url = format!("https://localhost:{}/.well-known/mercure", tls.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", tls.addr.port());
    let out = curl(&[
        "--http2",
        "--cacert",
        &fixture("tls-a-cert.pem"),
        "--resolve",
        &resolve,
        "-H",
        &auth,
        "-d",
        "topic=c&data=hi",
        &url,
    ]);
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(out.contains("urn:uuid:"), "{out}");
    let plain = h2c_server(&[]);
    let auth = format!("Authorization: Bearer {}", plain.token);
    let url = format!("http://{}/.well-known/mercure", plain.addr);
    let out = curl(&[
        "--http2-prior-knowledge",
        "-H",
        &auth,
        "-d",
        "topic=c&data=hi",
        &url,
    ]);
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    // And HTTP/1.1 from curl on the same port.
    let out = curl(&["--http1.1", "-H", &auth, "-d", "topic=c&data=hi", &url]);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}
