//! What pxkernel adds to a proxied home kernel, as the kernel crate's `Handler`.
//!
//! # Layout
//! - [`session`]: routes a request — one of our magics, or the home kernel.
//! - [`home`]: the proxied home kernel (start, relay both ways, restart, stop).
//! - [`link`]: a connection to a kernel we drive, routing what it sends by request.
//! - [`parse`]: the magic grammar and declarative option specs, as pure functions.
//! - [`registry`]: the magics we own, their help and completion.
//! - [`display`]: MIME-bundle builders shared by the magics.
//! - [`install`]: the kernelspec pxkernel installs.
//! - one module per magic: [`lsmagic`].

pub mod cells;
pub mod display;
pub mod home;
pub mod install;
pub mod link;
pub mod lsmagic;
pub mod parse;
pub mod px;
pub mod registry;
pub mod session;
pub mod sql;

pub use session::{Config, PxKernel};
