//! Links the root task as a static, non-PIE seL4 user image with `link.ld` (target only), and
//! puts the VM bundle named by `CAPVISOR_VMS` (written by `capvisor vms`) where `src/vmm.rs`
//! includes it; without it the bundle is empty and the root task runs no VM.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=link.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo::rustc-link-arg-bins=-T{dir}/link.ld");
        println!("cargo::rustc-link-arg-bins=--no-rosegment");
    }
    println!("cargo::rerun-if-env-changed=CAPVISOR_VMS");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("vms.bundle");
    let bytes = match std::env::var_os("CAPVISOR_VMS").filter(|p| !p.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo::rerun-if-changed={}", path.display());
            std::fs::read(&path).unwrap_or_else(|e| panic!("CAPVISOR_VMS={}: {e}", path.display()))
        }
        None => Vec::new(),
    };
    std::fs::write(&out, bytes).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
