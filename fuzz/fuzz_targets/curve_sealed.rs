//! Frames after a CURVE handshake that succeeded: the input is cut into frames
//! at each `FF FE`; a frame's first byte is its ZMTP flags (MORE 0x01, COMMAND
//! 0x04), the rest its body. Each is sealed in a MESSAGE box as the client would
//! seal it, and the server reads them back as messages and commands
//! (`transport::fuzz::read_sealed_frames`): what comes out of the box, which no
//! fuzzer could forge from outside.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pxkernel_kernel::transport::fuzz::read_sealed_frames;

fuzz_target!(|data: &[u8]| {
    read_sealed_frames(data);
});
