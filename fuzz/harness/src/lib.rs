//! The fuzz targets' bodies, and the seed generator that writes their starting corpora.
//!
//! Each module is one target: `run(data)` is everything the target does with one input, and
//! the module docs say what an input is. The entry points in `../fuzz_targets/` only hand
//! libFuzzer's bytes to these functions, so the same code runs under `cargo fuzz run` and in
//! the seed generator's self-check ([`seeds`]); this crate does not link libFuzzer, so the
//! seed generator builds as a plain program. A target panics only where capvisor's code
//! panicked, or where an invariant the code promises (a checked system round-trips through
//! its encoding, a generated device tree reads back, every exit is counted once) fails.
//!
//! Owns: the input layouts and the seeds that follow them. Never touches: the crates under
//! test (it calls their public API as the host tool, the loader and the root task do).

pub mod boot_payload;
pub mod bundle;
pub mod guest_fdt;
pub mod input;
pub mod linux_image;
pub mod seeds;
pub mod vm_exits;
pub mod vm_file;
