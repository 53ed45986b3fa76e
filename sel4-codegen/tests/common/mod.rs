//! Locating the kernel data the tests read: never copied into the repository.

use std::path::PathBuf;

/// The seL4 16.0.0 interface data shipped beside the workspace (`../shared/sel4/16.0.0`),
/// which has `extra/invocations_all.json` as the kernel build generated it.
pub fn shared_16() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/sel4/16.0.0")
}

/// The prefix named by `SEL4_PREFIX`, else the shared 16.0.0 data.
pub fn prefix_root() -> PathBuf {
    sel4_codegen::prefix::env_path("SEL4_PREFIX").unwrap_or_else(shared_16)
}
