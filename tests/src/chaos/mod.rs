//! The fault-injection suite's parts (issue 15): members behind proxies
//! ([`members`], [`proxy`]), clients ([`client`], and through the
//! bindings, [`bindings`]), what they record
//! ([`history`]) and the checkers ([`locks`], [`kv`]), and the timeline
//! picture ([`timeline`]). `dlm-chaos` (src/bin/dlm-chaos.rs) runs them.

pub mod bindings;
pub mod client;
pub mod history;
pub mod kv;
pub mod locks;
pub mod members;
pub mod proxy;
pub mod rng;
pub mod shim;
pub mod timeline;
