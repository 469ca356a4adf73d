//! The Jupyter messaging protocol, and nothing about what pxkernel adds.
//!
//! # Layout
//! - [`protocol`]: typed messages, MIME bundles, connection files — pure data.
//! - [`wire`]: frames ⇄ messages, HMAC signing and verification, replay cache — pure.
//! - [`transport`]: the only module that touches ZeroMQ.
//! - [`server`]: the kernel side — sockets, busy/idle, counters, stop_on_error,
//!   control while shell is busy — driving a [`server::Handler`].
//! - [`client`]: the client side — one connection to another kernel.
//! - [`kernelspec`]: find kernelspecs, launch kernels from them, install ours.

pub mod client;
pub mod kernelspec;
pub mod protocol;
pub mod server;
pub mod transport;
pub mod wire;
