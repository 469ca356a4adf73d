//! Engines and `%px`: fan a cell out to many kernels and stream their results back.
//!
//! - [`targets`]: which engines (`all`, `0,2`, `1:4`, `-1`), pure.
//! - [`options`]: the options of `%px`/`%pxconfig`, pure.
//! - [`output`]: engine output shaped for the notebook (`[stdout:0]`, `Out[0:5]:`), pure.
//! - [`launcher`]: where engines come from — the [`Launcher`] trait, each
//!   engine's [`Origin`], the local launcher and attach.
//! - [`ssh`] and [`remote`]: engines on SSH hosts, and the scripts run there;
//!   [`profiles`]: cluster profiles naming hosts and tunnels (TOML).
//! - [`engines`]: the registry — launch, stop, restart, liveness.
//! - [`run`]: one fan-out run, merging outputs as they arrive; never hangs.
//! - [`commands`]: the magics `%px`, `%autopx`, `%pxresult`, `%pxconfig`, `%engines`.
//! - [`magics`]: their declarations (names, forms, options, help).
//! - [`family`]: [`PxFamily`], the family as the router sees it.

pub mod commands;
pub mod engines;
pub mod family;
pub mod launcher;
pub mod magics;
pub mod options;
pub mod output;
pub mod profiles;
pub mod remote;
pub mod run;
pub mod ssh;
pub mod targets;

pub use commands::{Plan, Px};
pub use family::PxFamily;
pub use launcher::{Launcher, Origin};
