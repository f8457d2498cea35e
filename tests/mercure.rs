//! The classic Mercure hub features over real sockets: URI template selectors, subscriber
//! authorization by each token carrier, private updates, token expiry, publisher claims and
//! CORS.

mod common;

use std::time::{Duration, Instant};

use common::{enc, fixture, raw_request, token, token_signed, unix_now, Server, Subscriber};
use jsonwebtoken::Algorithm;

const BOOKS: &str = "https://example.com/books/{id}";

/// Publishes a public marker on `topic` and asserts it is the next event `sub` sees: proof
/// that nothing published before it was delivered unseen.
fn assert_nothing_before_marker(server: &Server, sub: &mut Subscriber, topic: &str) {
    let marker = server.publish(&[("topic", topic), ("data", "marker")]);
    assert_eq!(sub.expect_event().id.unwrap(), marker);
}

#[test]
fn uri_template_selectors_match_and_do_not_match() {
    let server = Server::start(&["--workers", "2"]);
    let mut sub = server.subscribe(&format!("topic={}", enc(BOOKS)), &[]);
    for (topic, delivered) in [
        ("https://example.com/books/1", true),
        ("https://example.com/books/1/chapters", false),
        ("https://example.com/authors/1", false),
        ("https://example.com/books/the%20dune", true),
        (BOOKS, true), // a template matches its own text
    ] {
        let id = server.publish(&[("topic", topic), ("data", topic)]);
        if delivered {
            assert_eq!(sub.expect_event().id.unwrap(), id, "{topic}");
        }
    }
    assert_nothing_before_marker(&server, &mut sub, "https://example.com/books/marker");
    // Alternate topics are matched too.
    let id = server.publish(&[("topic", "urn:x"), ("topic", "https://example.com/books/9")]);
    assert_eq!(sub.expect_event().id.unwrap(), id);
}

#[test]
fn private_updates_reach_only_authorized_subscribers_by_each_token_carrier() {
    let server = Server::start(&["--workers", "2"]);
    let alice = token(r#"{"mercure":{"subscribe":["https://example.com/users/alice/{?topic}"]}}"#);
    let bob = token(r#"{"mercure":{"subscribe":["https://example.com/users/bob/{?topic}"]}}"#);
    let q = format!("topic={}", enc(BOOKS));
    let mut by_header = server.subscribe(&q, &[("Authorization", &format!("Bearer {alice}"))]);
    let mut by_query = server.subscribe(&format!("{q}&authorization={alice}"), &[]);
    let mut by_cookie = server.subscribe(
        &q,
        &[(
            "Cookie",
            &format!("theme=dark; mercureAuthorization={alice}"),
        )],
    );
    let mut other = server.subscribe(&q, &[("Authorization", &format!("Bearer {bob}"))]);
    let mut anonymous = server.subscribe(&q, &[]);
    for s in [&by_header, &by_query, &by_cookie, &other, &anonymous] {
        assert_eq!(s.status, 200);
    }

    // The spec's example: canonical topic for the selector, alternate for the claim.
    let private = server.publish(&[
        ("topic", "https://example.com/books/1"),
        (
            "topic",
            "https://example.com/users/alice/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1",
        ),
        ("private", "on"),
        ("data", "secret"),
    ]);
    for s in [&mut by_header, &mut by_query, &mut by_cookie] {
        let ev = s.expect_event();
        assert_eq!(
            (ev.id.unwrap(), ev.data),
            (private.clone(), "secret".to_string())
        );
    }
    let marker = server.publish(&[("topic", "https://example.com/books/2"), ("data", "marker")]);
    for s in [&mut other, &mut anonymous] {
        assert_eq!(
            s.expect_event().id.unwrap(),
            marker,
            "the private update leaked"
        );
    }
    // Never replayed to anyone unauthorized either.
    let mut late = server.subscribe(&q, &[("Last-Event-ID", "earliest")]);
    let ev = late.expect_event();
    assert_eq!(ev.data, "marker", "replay leaked {ev:?}");
    let mut late_alice = server.subscribe(
        &q,
        &[
            ("Last-Event-ID", "earliest"),
            ("Authorization", &format!("Bearer {alice}")),
        ],
    );
    assert_eq!(late_alice.expect_event().id.unwrap(), private);
}

#[test]
fn token_carriers_follow_the_specs_precedence() {
    let server = Server::start(&["--workers", "1"]);
    let good = token(r#"{"mercure":{"subscribe":["*"]}}"#);
    let bad = "not.a.token";
    let q = "topic=t";
    let cookie = |t: &str| format!("mercureAuthorization={t}");
    // The header wins over query and cookie.
    let s = server.subscribe(
        &format!("{q}&authorization={bad}"),
        &[
            ("Authorization", &format!("Bearer {good}")),
            ("Cookie", &cookie(bad)),
        ],
    );
    assert_eq!(s.status, 200);
    let s = server.subscribe(
        &format!("{q}&authorization={good}"),
        &[
            ("Authorization", &format!("Bearer {bad}")),
            ("Cookie", &cookie(&good)),
        ],
    );
    assert_eq!(s.status, 401);
    // Without a header, the query wins over the cookie.
    let s = server.subscribe(
        &format!("{q}&authorization={good}"),
        &[("Cookie", &cookie(bad))],
    );
    assert_eq!(s.status, 200);
    let s = server.subscribe(
        &format!("{q}&authorization={bad}"),
        &[("Cookie", &cookie(&good))],
    );
    assert_eq!(s.status, 401);
    // The cookie alone.
    assert_eq!(
        server.subscribe(q, &[("Cookie", &cookie(&good))]).status,
        200
    );
    assert_eq!(server.subscribe(q, &[("Cookie", &cookie(bad))]).status, 401);
}

#[test]
fn expired_wrongly_signed_and_missing_subscriber_tokens() {
    let server = Server::start(&["--workers", "1", "--anonymous", "false"]);
    let expired = token(r#"{"mercure":{"subscribe":["*"]},"exp":1000}"#);
    let forged = common::token_with_key(r#"{"mercure":{"subscribe":["*"]}}"#, "wrong-key");
    for t in [expired.as_str(), forged.as_str()] {
        let mut s = server.subscribe("topic=t", &[("Authorization", &format!("Bearer {t}"))]);
        assert_eq!(s.status, 401);
        assert!(s.body_text().contains("unauthorized"));
    }
    let mut s = server.subscribe("topic=t", &[]);
    assert_eq!(
        s.status, 401,
        "anonymous = false must refuse a subscriber without a token"
    );
    assert!(s.body_text().contains("missing subscriber token"));
    let ok = token(r#"{"mercure":{"subscribe":[]}}"#);
    assert_eq!(
        server
            .subscribe("topic=t", &[("Authorization", &format!("Bearer {ok}"))])
            .status,
        200
    );
}

#[test]
fn a_subscription_is_closed_when_its_token_expires() {
    let server = Server::start(&["--workers", "2"]);
    let exp = unix_now() + 2;
    let t = token(&format!(
        r#"{{"mercure":{{"subscribe":["*"]}},"exp":{exp}}}"#
    ));
    let mut sub = server.subscribe("topic=t", &[("Authorization", &format!("Bearer {t}"))]);
    assert_eq!(sub.status, 200);
    let forever = token(r#"{"mercure":{"subscribe":["*"]}}"#);
    let mut other = server.subscribe(
        "topic=t",
        &[("Authorization", &format!("Bearer {forever}"))],
    );
    let start = Instant::now();
    let (_, closed) = sub.drain(Duration::from_secs(6));
    assert!(closed, "not closed at exp");
    assert!(unix_now() >= exp, "closed before exp");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "closed late: {:?}",
        start.elapsed()
    );
    // Only that one.
    assert_nothing_before_marker(&server, &mut other, "t");
}

#[test]
fn publisher_claims_accept_selectors_of_every_kind() {
    let server = Server::start(&["--workers", "1"]);
    let mut p = server.publisher();
    p.token = token(&format!(
        r#"{{"mercure":{{"publish":["{BOOKS}","urn:exact"]}}}}"#
    ));
    assert_eq!(
        p.post(&[("topic", "https://example.com/books/1")]).status,
        200
    );
    assert_eq!(p.post(&[("topic", "urn:exact")]).status, 200);
    assert_eq!(
        p.post(&[("topic", "https://example.com/authors/1")]).status,
        403
    );
    let r = p.post(&[
        ("topic", "https://example.com/books/1"),
        ("topic", "urn:other"),
    ]);
    assert_eq!(
        r.status, 403,
        "every topic, alternates included, must be allowed"
    );
}

#[test]
fn asymmetric_subscriber_keys() {
    for (alg, flag, key) in [
        (Algorithm::RS256, "RS256", "rsa-public.pem"),
        (Algorithm::ES256, "ES256", "ec-public.pem"),
    ] {
        let server = Server::start(&[
            "--workers",
            "1",
            "--subscriber-jwt-algorithm",
            &flag.to_lowercase(),
            "--subscriber-jwt-key",
            &fixture(key),
        ]);
        let t = token_signed(r#"{"mercure":{"subscribe":["*"]}}"#, alg);
        let mut sub = server.subscribe("topic=t", &[("Authorization", &format!("Bearer {t}"))]);
        assert_eq!(sub.status, 200, "{flag}");
        let id = server.publish(&[("topic", "t"), ("private", "on")]);
        assert_eq!(sub.expect_event().id.unwrap(), id);
        // An HS256 token signed with the publisher's secret is not a subscriber token here.
        let hs = token(r#"{"mercure":{"subscribe":["*"]}}"#);
        assert_eq!(
            server
                .subscribe("topic=t", &[("Authorization", &format!("Bearer {hs}"))])
                .status,
            401
        );
    }
}

#[test]
fn cors_preflight_and_credentials() {
    let server = Server::start(&["--workers", "1", "--cors-origin", "https://app.example"]);
    let r = raw_request(
        &server,
        b"OPTIONS /.well-known/mercure HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
    assert!(r.headers["access-control-allow-methods"].contains("POST"));
    assert!(r.headers["access-control-allow-headers"].contains("Authorization"));
    let r = raw_request(
        &server,
        b"OPTIONS /.well-known/mercure HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n",
    );
    assert_eq!(r.status, 403);
    assert!(!r.headers.contains_key("access-control-allow-origin"));

    let sub = server.subscribe("topic=t", &[("Origin", "https://app.example")]);
    assert_eq!(
        sub.headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(sub.headers["access-control-allow-credentials"], "true");
    let sub = server.subscribe("topic=t", &[("Origin", "https://evil.example")]);
    assert!(!sub.headers.contains_key("access-control-allow-origin"));
    // Errors carry the headers too, so the page's script can read them.
    let r = raw_request(
        &server,
        b"POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://app.example"
    );

    let any = Server::start(&["--workers", "1", "--cors-origin", "*"]);
    let sub = any.subscribe("topic=t", &[("Origin", "https://whoever.example")]);
    assert_eq!(sub.headers["access-control-allow-origin"], "*");
    assert!(!sub.headers.contains_key("access-control-allow-credentials"));
}

const SUBSCRIPTIONS: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";

/// Subscribes on topic `room-N` until one subscriber sits on each worker.
fn one_subscriber_per_worker(server: &Server, token: &str) -> Vec<(String, Subscriber)> {
    let mut slots: Vec<Option<(String, Subscriber)>> = vec![None, None];
    for n in 0..200 {
        let topic = format!("room-{n}");
        let s = server.subscribe(
            &format!("topic={topic}"),
            &[("Authorization", &format!("Bearer {token}"))],
        );
        assert_eq!(s.status, 200);
        let w = s.worker();
        if slots[w].is_none() {
            slots[w] = Some((topic, s));
        }
        if slots.iter().all(Option::is_some) {
            return slots.into_iter().map(Option::unwrap).collect();
        }
    }
    panic!("subscribers never reached both workers");
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn subscription_events_announce_subscribers_coming_and_going_on_either_core() {
    let server = Server::start(&["--workers", "2", "--subscriptions", "true"]);
    let watcher_token = token(&format!(
        r#"{{"mercure":{{"subscribe":["{SUBSCRIPTIONS}"]}}}}"#
    ));
    let mut watcher = server.subscribe(
        &format!("topic={}", enc(SUBSCRIPTIONS)),
        &[("Authorization", &format!("Bearer {watcher_token}"))],
    );
    let user = token(r#"{"mercure":{"subscribe":["x"],"payload":{"user":"alice"}}}"#);
    let subs = one_subscriber_per_worker(&server, &user);
    let wanted: Vec<String> = subs.iter().map(|(t, _)| t.clone()).collect();

    // Every subscription made (including the ones on the other worker that were not kept)
    // is announced; collect until both kept topics were seen active.
    let mut active = std::collections::HashMap::new();
    while !wanted.iter().all(|t| active.contains_key(t)) {
        let v = json(&watcher.expect_event().data);
        assert_eq!(v["type"], "Subscription");
        assert_eq!(v["@context"], "https://mercure.rocks/");
        if v["topic"] == SUBSCRIPTIONS {
            continue; // the watcher's own subscription, announced to itself
        }
        assert_eq!(v["payload"]["user"], "alice");
        if v["active"] == true {
            active.insert(v["topic"].as_str().unwrap().to_owned(), v);
        }
    }
    drop(subs);
    let mut gone = Vec::new();
    while gone.len() < 2 {
        let v = json(&watcher.expect_event().data);
        let topic = v["topic"].as_str().unwrap().to_owned();
        if v["active"] == false && wanted.contains(&topic) {
            let before = &active[v["topic"].as_str().unwrap()];
            assert_eq!(v["subscriber"], before["subscriber"]);
            assert_eq!(v["id"], before["id"]);
            gone.push(v);
        }
    }
}

#[test]
fn the_subscriptions_api_lists_subscribers_from_both_cores() {
    let server = Server::start(&["--workers", "2", "--subscriptions", "true"]);
    let reader = token(&format!(
        r#"{{"mercure":{{"subscribe":["{SUBSCRIPTIONS}"]}}}}"#
    ));
    let user = token(r#"{"mercure":{"payload":{"user":"bob"}}}"#);
    let subs = one_subscriber_per_worker(&server, &user);
    let get = |path: &str, auth: Option<&str>| {
        let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        raw_request(
            &server,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
        )
    };
    // Ask a few times: requests land on either core, and each must gather both.
    for _ in 0..4 {
        let r = get("/.well-known/mercure/subscriptions", Some(&reader));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.headers["content-type"], "application/ld+json");
        let v = json(&r.body);
        assert_eq!(v["type"], "Subscriptions");
        assert_eq!(v["id"], "/.well-known/mercure/subscriptions");
        let listed: Vec<&str> = v["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["topic"].as_str().unwrap())
            .collect();
        for (topic, _) in &subs {
            assert!(
                listed.contains(&topic.as_str()),
                "{topic} missing from {listed:?}"
            );
        }
    }
    let (topic, _) = &subs[1];
    let r = get(
        &format!("/.well-known/mercure/subscriptions/{}", enc(topic)),
        Some(&reader),
    );
    let v = json(&r.body);
    assert_eq!(v["subscriptions"].as_array().unwrap().len(), 1);
    let one = &v["subscriptions"][0];
    assert_eq!(one["payload"]["user"], "bob");
    let r = get(one["id"].as_str().unwrap(), Some(&reader));
    assert_eq!(r.status, 200);
    let v = json(&r.body);
    assert_eq!(v["topic"], topic.as_str());
    assert!(v["lastEventID"].is_string());
    let r = get(
        &format!(
            "/.well-known/mercure/subscriptions/{}/urn%3Auuid%3Anobody",
            enc(topic)
        ),
        Some(&reader),
    );
    assert_eq!(r.status, 404);
    assert_eq!(get("/.well-known/mercure/subscriptions", None).status, 401);
    let weak = token(r#"{"mercure":{"subscribe":["https://example.com/{x}"]}}"#);
    assert_eq!(
        get("/.well-known/mercure/subscriptions", Some(&weak)).status,
        403
    );
    drop(subs);

    // Off by default.
    let off = Server::start(&["--workers", "1"]);
    let r = raw_request(
        &off,
        format!("GET /.well-known/mercure/subscriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn the_debug_page_is_served_only_when_ui_is_on() {
    let on = Server::start(&["--workers", "1", "--ui", "true"]);
    let r = raw_request(
        &on,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/html"));
    assert!(r.body.contains("new EventSource(url)"));
    let off = Server::start(&["--workers", "1"]);
    let r = raw_request(
        &off,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404);
}
