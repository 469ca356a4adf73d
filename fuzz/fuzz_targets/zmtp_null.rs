//! ZMTP over the NULL mechanism: the input is what a peer sends to a bound
//! ROUTER (the shell socket), from its greeting on: greeting, READY and its
//! properties, then frames, messages and commands until the bytes end or one of
//! them drops the connection (`transport::fuzz::serve_peer_bytes`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pxkernel_kernel::transport::fuzz::serve_peer_bytes;

fuzz_target!(|data: &[u8]| {
    serve_peer_bytes(data, false);
});
