//! Generates the kernel-specific part of the bindings from the kernel at `$SEL4_PREFIX`:
//! configuration constants, object types and sizes, system call numbers, invocation labels
//! and encoders (from its XML and `gen_config.json`), fault labels and fault message layouts
//! (from its C headers, or from the kernel source `$SEL4_SOURCE` when the prefix has none, as
//! the interface data does). Fails with one line naming what is missing and what to do.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-env-changed=SEL4_PREFIX");
    // The kernel source, read for the fault ABI when the prefix has no C headers.
    println!("cargo::rerun-if-env-changed=SEL4_SOURCE");
    println!("cargo::rerun-if-env-changed=PWD");
    let prefix = match sel4_codegen::Prefix::from_env() {
        Ok(p) => p,
        Err(e) => fail(&e.to_string()),
    };
    // The prefix as an absolute path, for tests that read its headers.
    println!("cargo::rustc-env=SEL4_PREFIX_RESOLVED={}", prefix.root().display());
    for f in prefix.input_files() {
        println!("cargo::rerun-if-changed={}", f.display());
    }
    let code = match sel4_codegen::generate(&prefix) {
        Ok(c) => c,
        Err(e) => fail(&e.to_string()),
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("generated.rs"), code).expect("write generated.rs");
}

fn fail(msg: &str) -> ! {
    // One line, first thing in cargo's report of the failed build script.
    eprintln!("error: {msg}");
    std::process::exit(1);
}
