//! `ssegate-peer-axum`, a benchmark peer for ssegate: the SSE hub a Rust user would write with
//! tokio and axum. One `tokio::sync::broadcast` channel per topic in a mutex-guarded map, a
//! 100-event history per topic, and axum's `Sse` response turning each subscriber's
//! `BroadcastStream` into events (encoded per subscriber, as `Event` requires). A subscriber
//! that falls more than the channel's capacity behind skips what it missed (`Lagged`), which
//! the load generator counts as missing deliveries.
//!
//! It speaks the subset of Mercure that `ssegate-load` uses:
//!
//! ```text
//! GET  /.well-known/mercure?topic=T     text/event-stream, ":" comment once registered
//! POST /.well-known/mercure             form topic=T&data=D  → 200, the event id
//! ```
//!
//! Publisher JWTs are not checked (ssegate verifies one per publish: a cost this peer skips).
//! The runtime is `#[tokio::main]`'s default: one worker thread per CPU it may run on, so
//! `taskset -c 0` gives it one. It prints `ssegate-peer-axum listening on ADDR` when ready.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Form, Query, State};
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// Events kept per topic.
const HISTORY: usize = 100;
/// Events a subscriber may fall behind before it skips some.
const CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
struct Update {
    id: u64,
    data: Arc<str>,
}

struct Topic {
    tx: broadcast::Sender<Update>,
    history: VecDeque<Update>,
}

#[derive(Default)]
struct Hub {
    topics: Mutex<HashMap<String, Topic>>,
    next_id: AtomicU64,
}

impl Hub {
    fn with_topic<R>(&self, name: &str, f: impl FnOnce(&mut Topic) -> R) -> R {
        // A panic while holding the lock leaves the map consistent: ignore the poison.
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let topic = topics.entry(name.to_owned()).or_insert_with(|| Topic {
            tx: broadcast::channel(CAPACITY).0,
            history: VecDeque::with_capacity(HISTORY),
        });
        f(topic)
    }
}

#[derive(Deserialize)]
struct SubscribeQuery {
    topic: String,
}

#[derive(Deserialize)]
struct PublishForm {
    topic: String,
    #[serde(default)]
    data: String,
}

async fn subscribe(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<SubscribeQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = hub.with_topic(&q.topic, |t| t.tx.subscribe());
    // Subscribed before the response starts: the opening comment means "registered".
    let opening = stream::once(async { Ok(Event::default().comment("")) });
    let updates = BroadcastStream::new(rx).filter_map(|update| async move {
        // Err = Lagged: the subscriber skips what it missed.
        let u = update.ok()?;
        Some(Ok(Event::default().id(u.id.to_string()).data(&*u.data)))
    });
    Sse::new(opening.chain(updates))
}

async fn publish(State(hub): State<Arc<Hub>>, Form(form): Form<PublishForm>) -> String {
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let update = Update {
        id,
        data: form.data.into(),
    };
    hub.with_topic(&form.topic, |t| {
        if t.history.len() == HISTORY {
            t.history.pop_front();
        }
        t.history.push_back(update.clone());
        // Err only means nobody is subscribed: the event is still in the history.
        let _ = t.tx.send(update);
    });
    id.to_string()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:0".to_owned();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            _ => {
                eprintln!("usage: ssegate-peer-axum [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    let app = Router::new()
        .route("/.well-known/mercure", get(subscribe).post(publish))
        .with_state(Arc::new(Hub::default()));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("ssegate-peer-axum listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
