//! What every pxkernel magic family implements, and what families share.
//!
//! # Layout
//! - [`family`]: the [`Family`] trait a family implements, the [`Call`] it runs,
//!   the [`Claim`] of a line it owns that does not start with `%`.
//! - [`spec`]: how a magic is declared ([`MagicSpec`]) and the [`Index`] the
//!   router builds from the declarations: lookup, completion, inspect.
//! - [`error`]: [`MagicError`], the one error of every magic, and [`report`],
//!   the one place that turns it into the notebook's error output.
//! - [`parse`]: the magic grammar and declarative option specs, pure functions.
//! - [`display`]: MIME-bundle builders (tables, definition lists, pager text).
//! - [`home`]: the proxied home kernel (start, relay both ways, restart, stop).
//! - [`link`]: a connection to a kernel we drive, routing what it sends by request.
//! - [`shared`]: values families share without naming each other (ssh connections).
//!
//! A family crate depends on this crate and on no other family; the router
//! depends on this crate and on no family.
//!
//! # Adding a family
//! Implement [`Family`] in a crate of its own, declare its magics as
//! [`MagicSpec`]s, and add its constructor to the list the binary hands the
//! router. Nothing else names it.

pub mod display;
pub mod error;
pub mod family;
pub mod home;
pub mod link;
pub mod parse;
pub mod shared;
pub mod spec;

pub use error::{MagicError, outcome, report};
pub use family::{Call, Claim, Family, Interrupted, LocalFuture, MakeFamily};
pub use home::{Home, HomeError};
pub use shared::Shared;
pub use spec::{Completion, CompletionKind, Form, Index, MagicSpec};
