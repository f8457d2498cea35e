//! Engines that hold the one order outside this process. Owns: talking to them. May call:
//! `hub` (the [`crate::hub::sequencer::Sequencer`] trait each engine implements, the update
//! and its encoding), `metrics`, `clock`.
//!
//! The in-memory order needs no engine (`hub::sequencer::Memory`); [`redis`] keeps the order
//! in a Redis stream that every node reads.

pub mod redis;
mod resp;
