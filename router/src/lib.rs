//! pxkernel's [`Handler`](pxkernel_kernel::server::Handler): the router between
//! the frontend, the home kernel and the magic families.
//!
//! # Layout
//! - [`router`]: [`Router`] routes a request to the family that owns it or to
//!   the home kernel; builds the index, `%lsmagic` and completion from what the
//!   families declare; sends interrupt and shutdown to each.
//! - [`cells`]: where a cell changes hands (plain code, then one of our lines),
//!   pure functions.
//! - [`lsmagic`]: the router's own magic.
//! - [`install`]: the kernelspec pxkernel installs.
//!
//! The families themselves are crates of their own, handed to
//! [`Router::new`] as a list; this crate names none of them.

pub mod cells;
pub mod install;
pub mod lsmagic;
pub mod router;

pub use router::{Config, Router};
