//! ZMTP over CURVE, at a server with a fixed key pair (secret `[7; 32]`). The
//! input is fed twice: as the byte stream a peer sends (greeting, HELLO,
//! INITIATE, then boxes: `transport::fuzz::serve_peer_bytes`), and as the data
//! of a HELLO command (its first 194 bytes) followed by that of an INITIATE
//! (`transport::fuzz::curve_server_commands`), the parsing in front of the boxes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pxkernel_kernel::transport::fuzz::{curve_server_commands, serve_peer_bytes};

fuzz_target!(|data: &[u8]| {
    serve_peer_bytes(data, true);
    curve_server_commands(data);
});
