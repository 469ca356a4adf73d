//! Engines and `%px`: fan a cell out to many kernels and stream their results back.
//!
//! - [`targets`]: which engines (`all`, `0,2`, `1:4`, `-1`), pure.
//! - [`options`]: the options of `%px`/`%pxconfig`, pure.
//! - [`output`]: engine output shaped for the notebook (`[stdout:0]`, `Out[0:5]:`), pure.

pub mod options;
pub mod output;
pub mod targets;
