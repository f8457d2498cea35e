//! ③–⑤ The hub: publish validation, the sequencer's one order and history, the per-core
//! subscriber shard and its fan-out.
//!
//! Owns: everything about events and subscribers that is not a socket. May call: `http`
//! (forms), `net::sys` (the shard's drops), `error`.

pub mod event;
pub mod history;
pub mod outbox;
pub mod publish;
pub mod selector;
pub mod sequencer;
pub mod shard;
pub mod subscriptions;

/// The hash maps of the hot path (history ids, topic index, per-core request tables): foldhash
/// instead of std's SipHash, which showed as ~2.6% of a core in a publish-throughput profile.
/// Seeded randomly per process, so keys chosen by clients (topics, ids) cannot be aimed at one
/// bucket from outside.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A set of subscriber ids, in insertion order, with [`FastMap`]'s hasher.
pub type IdSet = indexmap::IndexSet<usize, foldhash::fast::RandomState>;
