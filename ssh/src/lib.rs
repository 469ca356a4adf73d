//! pxkernel's SSH: the system OpenSSH client driven for the notebook, so the
//! user's `~/.ssh/config`, agent, known_hosts, ProxyJump, Kerberos and FIDO keys
//! work as in a terminal.
//!
//! # Layout
//! - [`forward`]: `-L` / `-D` specs, parsed and written back (pure).
//! - [`args`]: `%ssh_tunnel`'s OpenSSH-style arguments and the [`Endpoint`] a
//!   connection is shared by (pure).
//! - [`askpass`]: prompts (password, passphrase, code, unknown host key) brought
//!   to the frontend's `input()`; refused at once when it takes none.
//! - [`master`]: one ControlMaster per endpoint, pxkernel's child; forwards on it;
//!   reconnect with backoff, forwards restored.
//! - [`connections`]: [`Ssh`], every connection and tunnel of one kernel, shared
//!   by the families (px and sql use it through the contract's `Shared`).
//! - [`family`] and [`magics`]: `%ssh_tunnel`.
//! - [`error`]: [`SshError`]; [`notices`]: what the next cell is told.

pub mod args;
pub mod askpass;
pub mod connections;
pub mod error;
pub mod family;
pub mod forward;
pub mod magics;
pub mod master;
pub mod notices;

pub use args::Endpoint;
pub use connections::{Ssh, Tunnel};
pub use error::SshError;
pub use family::SshFamily;
pub use forward::Forward;
