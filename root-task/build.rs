//! Links the root task as a static, non-PIE seL4 user image with `link.ld` (target only), and
//! puts the VM bundle named by `CAPVISOR_VMS` (written by `capvisor vms`) where `src/vmm.rs`
//! includes it; without it the bundle is empty and the root task runs no VM. Also copies the
//! placement facts of the platform the kernel was built for (`$SEL4_PREFIX/capvisor-platform`,
//! written by the CMake build; qemu-arm-virt's when absent, or for a platform without its own
//! `platforms/NAME/placement.txt`) to where `src/vmm.rs` includes them.

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
    platform_facts();
}

fn platform_facts() {
    println!("cargo::rerun-if-env-changed=SEL4_PREFIX");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let platforms = manifest.join("../platforms");
    let mut platform = "qemu-arm-virt".to_string();
    if let Some(prefix) = std::env::var_os("SEL4_PREFIX").filter(|p| !p.is_empty()) {
        let file = PathBuf::from(prefix).join("capvisor-platform");
        println!("cargo::rerun-if-changed={}", file.display());
        if let Some(name) =
            std::fs::read_to_string(&file).ok().and_then(|t| t.split_whitespace().next().map(str::to_string))
            && platforms.join(&name).join("placement.txt").is_file()
        {
            platform = name;
        }
    }
    let src = platforms.join(&platform).join("placement.txt");
    println!("cargo::rerun-if-changed={}", src.display());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::copy(&src, out_dir.join("placement.txt")).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    std::fs::write(out_dir.join("platform"), &platform).unwrap_or_else(|e| panic!("{}: {e}", out_dir.display()));
}
