//! Micro-benchmarks of the hot paths (issue 3): encoding an event into its SSE frame,
//! selector matching, and one core's fan-out of one event to 10,000 local subscribers,
//! beside the floor of that fan-out (a `Bytes` clone pushed into 10,000 `VecDeque`s).
//!
//! `cargo bench --bench hotpaths` (run it with `nice -n 19` on a shared machine). Short
//! warm-up and measurement times are set below; criterion's command-line flags override them.

use std::collections::VecDeque;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use ssegate::hub::event::{encode, Event, Update};
use ssegate::hub::selector::Selector;
use ssegate::hub::shard::{NewSubscriber, Shard};

const SUBSCRIBERS: usize = 10_000;
const TOPIC: &str = "https://example.com/books/1";

/// One topic, a hub-made id, 100 bytes of single-line data: a typical publish.
fn typical_update() -> Update {
    Update {
        topics: vec![TOPIC.into()],
        data: format!("{{\"id\":1,\"title\":\"{}\"}}", "x".repeat(81)),
        id: "urn:uuid:6f1c2a9e-3b7d-4c1e-9a5f-0d2b8e4c7a13".into(),
        event_type: None,
        retry: None,
        private: false,
        generated_id: false,
    }
}

/// 1 KiB of data over 10 lines, with `type` and `retry`.
fn multiline_update() -> Update {
    let mut lines: Vec<String> = (0..9).map(|i| format!("{i}{}", "y".repeat(100))).collect();
    lines.push(format!("9{}", "y".repeat(105)));
    let data = lines.join("\n");
    assert_eq!(data.len(), 1024);
    Update {
        event_type: Some("book-updated".into()),
        retry: Some(2500),
        data,
        ..typical_update()
    }
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let typical = typical_update();
    assert_eq!(typical.data.len(), 100);
    let multi = multiline_update();
    g.bench_function("typical_100B_1_line", |b| {
        b.iter(|| encode(black_box(&typical)))
    });
    g.bench_function("multiline_1KiB_10_lines_type_retry", |b| {
        b.iter(|| encode(black_box(&multi)))
    });
    g.finish();
}

fn bench_selector(c: &mut Criterion) {
    let mut g = c.benchmark_group("selector");
    let exact = Selector::parse(TOPIC);
    let any = Selector::parse("*");
    let template = Selector::parse("https://example.com/books/{id}");
    assert!(matches!(template, Selector::Template(_)));
    let cases: [(&str, &Selector, &str, bool); 6] = [
        ("exact_match", &exact, TOPIC, true),
        ("exact_miss", &exact, "https://example.com/books/2", false),
        ("any", &any, TOPIC, true),
        ("template_match", &template, TOPIC, true),
        // Fails the literal-prefix check: the regex is not run.
        (
            "template_miss_prefix",
            &template,
            "https://example.com/authors/1",
            false,
        ),
        // Passes the prefix, fails in the template's program.
        (
            "template_miss_regex",
            &template,
            "https://example.com/books/1/chapters",
            false,
        ),
    ];
    for (name, sel, topic, expected) in cases {
        assert_eq!(sel.matches(topic), expected, "{name}");
        g.bench_function(name, |b| {
            b.iter(|| black_box(sel).matches(black_box(topic)))
        });
    }
    // The worst a subscriber can make a core test per event: no literal prefix or suffix to
    // reject on, and every expression optional, so all of them are alive at the first byte.
    // As many as fit in the default max_selector_bytes (1,024).
    let mut hostile_text = String::new();
    for i in 0.. {
        let next = format!("{{v{i}:9}}");
        if hostile_text.len() + next.len() > 1024 {
            break;
        }
        hostile_text.push_str(&next);
    }
    let hostile = Selector::parse(&hostile_text);
    assert!(matches!(hostile, Selector::Template(_)));
    assert!(!hostile.matches(TOPIC));
    g.bench_function("template_hostile_1KiB", |b| {
        b.iter(|| black_box(&hostile).matches(black_box(TOPIC)))
    });
    // Topic of value characters only: the hostile template runs its whole length.
    let word = "abcdefghijklmnopqrstuvwxyz0123456789";
    g.bench_function("template_hostile_1KiB_36B_word", |b| {
        b.iter(|| black_box(&hostile).matches(black_box(word)))
    });
    g.bench_function("template_compile_1KiB", |b| {
        b.iter(|| Selector::parse(black_box(&hostile_text)))
    });
    // Shapes that do not merge into one run (a literal value byte between expressions,
    // alternating operators, named variables), as many as fit in 1 KiB (more than the 16
    // expressions a subscriber may send: these are the matcher's own limits), against a
    // word and against the piece's own expansion repeated, so that every expression stays
    // alive to the end.
    for (name, one, expansion) in [
        ("a-", "{a}-", "a-"),
        ("a/b", "{a}{/b}", "a/a"),
        ("qa", "{?a}", "?a=a"),
        ("a9-", "{a:9}-", "a-"),
    ] {
        let text = one.repeat(1024 / one.len());
        let sel = Selector::parse(&text);
        assert!(matches!(sel, Selector::Template(_)));
        let topic = expansion.repeat(1024 / one.len());
        assert!(sel.matches(&topic), "{text} vs {topic}");
        g.bench_function(format!("template_hostile_{name}_36B_word"), |b| {
            b.iter(|| black_box(&sel).matches(black_box(word)))
        });
        g.bench_function(format!("template_hostile_{name}_expansion"), |b| {
            b.iter(|| black_box(&sel).matches(black_box(&topic)))
        });
    }
    // The costliest shape a subscriber may send (16 expressions) on an ordinary topic:
    // `{+a}` takes every URL byte, `{?b}` does not merge with it, so all eight `{+a}` stay
    // alive to the end.
    let text = "{+v}".to_owned() + &"{?w}{+v}".repeat(7) + "{?z}";
    let sel = Selector::parse(&text);
    assert!(sel.matches(TOPIC));
    g.bench_function("template_hostile_16_expressions_topic", |b| {
        b.iter(|| black_box(&sel).matches(black_box(TOPIC)))
    });
    g.bench_function("template_compile_16_expressions", |b| {
        b.iter(|| Selector::parse(black_box(&text)))
    });
    g.finish();
}

fn event(topic: &str) -> Event {
    Event {
        seq: 0,
        id: "urn:uuid:6f1c2a9e-3b7d-4c1e-9a5f-0d2b8e4c7a13".into(),
        topics: vec![Box::<str>::from(topic)].into_boxed_slice(),
        private: false,
        frame: encode(&Update {
            topics: vec![topic.into()],
            ..typical_update()
        }),
        at: Instant::now(),
    }
}

/// A shard with one subscriber per selector in `selectors`, each a plain socket (`direct`)
/// already handed to the flusher, as in steady state: fan-out queues the frame and marks the
/// subscriber dirty; no task is woken, no I/O is done (fd -1).
fn shard(selectors: impl Iterator<Item = String>) -> Shard {
    let mut s = Shard::new(1 << 20);
    let mut cx = Context::from_waker(Waker::noop());
    for (serial, raw) in selectors.enumerate() {
        let id = s.add(NewSubscriber {
            selectors: vec![s.intern(&raw)],
            rights: None,
            fd: ssegate::net::sys::SocketFd::NONE,
            direct: true,
            after_seq: 0,
            expires: None,
            lifetime_ends: None,
            serial: serial as u64,
            info: None,
        });
        // The task finds its queue empty and parks: the flusher writes it from now on.
        assert!(s.poll_next(id, &mut cx).is_pending());
    }
    s
}

/// What the flusher does after a fan-out, every send taking everything: empties every
/// queue and the dirty list, so the next fan-out meets the same state. Returns how many
/// subscribers were flushed.
fn flush_all(s: &mut Shard, dirty: &mut Vec<usize>) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    dirty.clear();
    if s.poll_dirty(&mut cx, dirty) == Poll::Pending {
        return 0;
    }
    let now = Instant::now();
    let mut n = 0;
    for &id in dirty.iter() {
        if let Some((_, bytes)) = s.flush_begin(id) {
            let len = bytes.len();
            s.flush_end(id, len, Ok(len), now);
            n += 1;
        }
    }
    dirty.clear();
    n
}

/// Times fan-outs of `events` (in rounds of one fan-out per event: each event's
/// subscribers get exactly one frame per round), giving each event a fresh seq before its
/// round (a subscriber takes a seq once), then flushes after each round, untimed, so every
/// round meets the same empty queues. Checks that each fan-out reached `per_event`
/// subscribers.
fn time_fan_out(
    b: &mut criterion::Bencher<'_>,
    s: &mut Shard,
    events: &mut [Event],
    per_event: usize,
) {
    let mut dirty = Vec::with_capacity(SUBSCRIBERS);
    // Criterion calls this once per phase (warm-up, measurement) with the same shard: go on
    // from the newest seq already delivered.
    let mut seq = events.iter().map(|e| e.seq).max().unwrap_or(0);
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let round = events.len().min((iters - done) as usize);
            for ev in &mut events[..round] {
                seq += 1;
                ev.seq = seq;
            }
            let mut delivered = 0;
            let start = Instant::now();
            for ev in &events[..round] {
                delivered += s.fan_out(black_box(ev)).delivered;
            }
            total += start.elapsed();
            assert_eq!(delivered, round * per_event);
            assert_eq!(flush_all(s, &mut dirty), round * per_event);
            done += round as u64;
        }
        total
    });
}

fn bench_fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("fan_out_10k");

    // (a) ssegate: 10,000 subscribers on one exact topic.
    let mut s = shard((0..SUBSCRIBERS).map(|_| TOPIC.to_owned()));
    let mut events = [event(TOPIC)];
    g.bench_function("shard_exact_1_topic", |b| {
        time_fan_out(b, &mut s, &mut events, SUBSCRIBERS)
    });
    drop(s);

    // 10,000 subscribers over 1,000 exact topics (10 each, in arrival order j % 1000): each
    // fan-out is one event on one topic, the rounds cycle through the 1,000 topics.
    const TOPICS: usize = 1_000;
    let topic = |k: usize| format!("https://example.com/books/{k}");
    let mut s = shard((0..SUBSCRIBERS).map(|j| topic(j % TOPICS)));
    let mut events: Vec<Event> = (0..TOPICS).map(|k| event(&topic(k))).collect();
    g.bench_function("shard_exact_1000_topics_10_each", |b| {
        time_fan_out(b, &mut s, &mut events, SUBSCRIBERS / TOPICS)
    });
    drop(s);

    // 10,000 subscribers on `*`: the pattern path (one compiled selector, shared).
    let mut s = shard((0..SUBSCRIBERS).map(|_| "*".to_owned()));
    let mut events = [event(TOPIC)];
    g.bench_function("shard_star", |b| {
        time_fan_out(b, &mut s, &mut events, SUBSCRIBERS)
    });
    drop(s);

    // (b) The floor: a clone of the frame pushed into each of 10,000 queues, no index, no
    // accounting, no dirty list. Emptied between iterations, untimed (capacity is kept, as
    // the shard's queues keep theirs).
    let frame = event(TOPIC).frame;
    let mut queues: Vec<VecDeque<Bytes>> = (0..SUBSCRIBERS).map(|_| VecDeque::new()).collect();
    g.bench_function("floor_vec_vecdeque_push", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                for q in queues.iter_mut() {
                    q.push_back(frame.clone());
                }
                black_box(&mut queues);
                total += start.elapsed();
                for q in queues.iter_mut() {
                    q.clear();
                }
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_encode, bench_selector, bench_fan_out
}
criterion_main!(benches);
