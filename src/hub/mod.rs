//! ③–⑤ The hub: publish validation, the sequencer's one order and history, the per-core
//! subscriber shard and its fan-out.

pub mod event;
pub mod history;
pub mod publish;
pub mod selector;
pub mod shard;
pub mod subscriptions;
