//! Checking numbers against an installed kernel's C headers: a C file of `_Static_assert`s
//! compiled (syntax only) by the AArch64 cross compiler with the prefix's
//! `libsel4/include`. Tests of several crates use it to prove that what they generate or
//! hard-code (object types and sizes, labels, fault labels and message layouts) is what
//! libsel4 says.
//!
//! The `sel4` crate cannot be built without a prefix that has the C headers (its fault ABI is
//! read from them), so a test that uses this has a prefix with headers; the cross compiler is
//! one of the build's required packages. When either is missing the check fails, saying
//! what to install or set: it is never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cross compiler used.
pub const CC: &str = "aarch64-linux-gnu-gcc";

/// The installed kernel prefix with C headers: `$SEL4_KERNEL_PREFIX`, else `$SEL4_PREFIX`.
/// `Err` says what is missing (the caller fails with it).
pub fn installed_kernel_prefix() -> Result<PathBuf, String> {
    let (var, root) = ["SEL4_KERNEL_PREFIX", "SEL4_PREFIX"]
        .iter()
        .find_map(|v| crate::prefix::env_path(v).map(|p| (*v, p)))
        .ok_or("neither SEL4_KERNEL_PREFIX nor SEL4_PREFIX is set: point SEL4_PREFIX at an installed kernel")?;
    if !root.join("libsel4/include/sel4/sel4.h").is_file() {
        return Err(format!(
            "{var}={} has no C headers (libsel4/include/sel4/sel4.h); point it at an installed kernel",
            root.display()
        ));
    }
    Ok(root)
}

/// Compiles `asserts` (C source, headers included) against `root`'s headers in `work_dir`.
/// First proves the check can fail: the same text plus the false `control` assertion must be
/// rejected. `Ok(())` when the real text compiles; `Err` carries the compiler's complaint, or
/// says that the compiler is missing.
pub fn check_static_asserts(
    root: &Path,
    work_dir: &Path,
    name: &str,
    asserts: &str,
    control: &str,
) -> Result<(), String> {
    let compile = |file: &str, text: &str| {
        let path = work_dir.join(file);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Command::new(CC)
            .args(["-fsyntax-only", "-ffreestanding", "-std=gnu11"])
            .arg("-I")
            .arg(root.join("libsel4/include"))
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run {CC} ({e}): apt-get install gcc-aarch64-linux-gnu"))
    };
    let wrong = format!("{asserts}_Static_assert({control}, \"control\");\n");
    if compile(&format!("{name}_control.c"), &wrong)?.status.success() {
        return Err(format!("a false _Static_assert ({control}) compiled: the check would prove nothing"));
    }
    let out = compile(&format!("{name}.c"), asserts)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("values disagree with {}:\n{}", root.display(), String::from_utf8_lossy(&out.stderr)))
    }
}
