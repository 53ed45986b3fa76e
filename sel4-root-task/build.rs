//! Records the kernel configuration at `$SEL4_PREFIX` in canonical text form; the runtime
//! embeds it in every root task's ELF (section `.capvisor.kconfig`) so `capvisor image`
//! can refuse a kernel the root task was not built for.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-env-changed=SEL4_PREFIX");
    println!("cargo::rerun-if-env-changed=PWD");
    let Some(prefix) = sel4_codegen::prefix::env_path("SEL4_PREFIX") else {
        eprintln!("error: SEL4_PREFIX is not set: point it at an installed seL4 kernel prefix");
        std::process::exit(1);
    };
    for f in boot_image::kconfig::FILES {
        println!("cargo::rerun-if-changed={}", prefix.join(f).display());
    }
    let config = match boot_image::kconfig::Kconfig::from_prefix(&prefix) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("kconfig.txt");
    std::fs::write(&out, config.to_text()).expect("write kconfig.txt");
}
