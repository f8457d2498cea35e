//! # ssegate
//!
//! A Server-Sent Events push gateway speaking the classic Mercure protocol, built
//! thread-per-core on glommio and io_uring.
//!
//! ## The model
//!
//! Every CPU core runs one pinned glommio executor that owns everything it touches: its own
//! SO_REUSEPORT listener, its connections, its subscriber shard (selector → subscribers) and
//! a copy of the event history. Nothing on the event path is shared between cores or locked.
//! Cores talk only through glommio's channel mesh, and the only values that cross it are
//! [`runtime::CoreMsg`]s.
//!
//! One core (core 0) holds the **order** (a [`hub::sequencer::Sequencer`]; the in-memory one
//! is [`hub::sequencer::Memory`]): every publish, on whichever core it arrived, is sent
//! there, numbered, encoded once into its final SSE bytes, and broadcast to every core in
//! that order. All cores therefore hold the same history in the same order, and a client
//! resumes with `Last-Event-ID` on whichever core it reconnects to. An engine-backed order
//! (Redis Streams) is a second implementation of the same trait.
//!
//! ```text
//!             core 0 (order)                              core 1 … n
//!   ① accept ──► ② parse ──► ③ publish ─┐        ① accept ──► ② parse ──► ③ publish
//!                   │                   ▼                         │             │
//!                   │            ④ sequence + encode ◄──── mesh ──┼─────────────┘
//!                   │             │ history │   └──────── mesh ───┼──► history
//!                   ▼             ▼                               ▼       │
//!              ③ subscribe ─► ⑤ fan-out (shard)            ③ subscribe ─► ⑤ fan-out
//!                                 │                                       │
//!                            ⑥ flusher / task (outbox)             ⑥ flusher / task
//! ```
//!
//! | step | module | what happens |
//! |---|---|---|
//! | ① accept | [`net::listener`], [`conn`] (`admit`) | per-core listener, accept back-off, `max_connections` |
//! | ② parse | [`net::tls`], `conn::tls`, [`http`] | TLS handshake, request head within limits, strict forms, CORS |
//! | ③ route, subscribe / publish | [`conn`] (`route`, `respond`), [`hub::publish`], [`hub::selector`], [`auth`] | routing, JWT, selectors, validation, registration with replay, subscriptions API; every answer built by [`http::Response`] |
//! | ④ sequence | [`hub::sequencer`], [`runtime`] (`Core::publish`, the order's task), [`hub::event`], [`hub::history`] | one order, encode once, broadcast over [`runtime::mesh`], history |
//! | ⑤ fan-out | [`hub::shard`] | index lookup, bounded queues, slow-consumer drop |
//! | ⑥ write | [`hub::outbox`], [`conn::flusher`], `conn::subscriber` | one subscriber's write protocol; one non-blocking send per dirty subscriber (or one io_uring batch), coalesced; the subscriber's task takes over on a full socket; heartbeats, close detection |
//!
//! Around the flow: [`server`] starts one executor per core and runs each core's life
//! (start its tasks, serve, shut down through [`runtime::lifecycle`]: serving → draining →
//! flushed → stopped); [`runtime::Core`] is what a connection's handlers may touch, and
//! [`runtime::Duties`] the core's own tasks, which only `server` holds. [`conn::admin`] and
//! [`metrics`] serve `/metrics`, `/healthz` and `/readyz` on core 0, gathering every core's
//! counters ([`metrics::counters`], each declared once) with the same mesh question the
//! subscriptions API uses; [`access_log`] buffers one line per request on each core and
//! hands the buffers to one writer thread, so no core waits on a disk; `main.rs` turns
//! signals into shutdown (SIGTERM/SIGINT) and certificate reload (SIGHUP), and speaks
//! systemd's notify protocol.
//!
//! **Layers.** Each module imports only modules below it: `error`, `clock` → `metrics`,
//! `access_log` → `net`, `http` → `hub` → `auth` → `config` → `runtime` → `conn` → `server`.
//! `.ci/layers.py` checks it in CI.
//!
//! **Who owns a connection.** The core that accepted it, for its whole life: one task per
//! connection reads its request; a subscriber's task then writes its head and replay and
//! stays parked to notice the client leaving. The shard owns the subscriber's outbox; fan-out
//! only pushes a clone of the event's `Bytes` and marks the subscriber dirty, never waits.
//! The core's flusher writes dirty plain subscribers many at a time without waking their
//! tasks; a socket that does not take everything (and every TLS stream) is written by its
//! own task, which may wait. A subscriber whose queue passes `max_queued_bytes`, or whose
//! writes stall for `write_timeout`, is disconnected; it reconnects and resumes from history.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
pub mod auth;
pub mod clock;
pub mod config;
pub mod conn;
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod net;
pub mod runtime;
pub mod server;
