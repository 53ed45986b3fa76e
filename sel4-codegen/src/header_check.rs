//! Checking numbers against an installed kernel's C headers: a C file of `_Static_assert`s
//! compiled (syntax only) by the AArch64 cross compiler with the prefix's
//! `libsel4/include`. Tests of several crates use it to prove that what they generate or
//! hard-code (object types and sizes, labels, fault labels and message layouts) is what
//! libsel4 says.
//!
//! A prefix without headers (the interface data of a host build) builds the `sel4` crate too:
//! its fault ABI is then read from the kernel source. A check against the headers still needs
//! an installed kernel, and where there is none it fails, saying what to set, unless
//! `CAPVISOR_NO_KERNEL_HEADERS=1` ([`NO_HEADERS_VAR`]) says this run has none on purpose: then
//! it is skipped and recorded as skipped ([`crate::skip`]; `CAPVISOR_REQUIRE_KERNEL=1` still
//! makes it a failure). The cross compiler is one of the build's required packages: without
//! it the check fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cross compiler used.
pub const CC: &str = "aarch64-linux-gnu-gcc";

/// The environment variable that lets a check against installed C headers be skipped (and
/// recorded as skipped) when this run has no installed kernel: `CAPVISOR_NO_KERNEL_HEADERS=1`,
/// for host builds against the interface data (`scripts/check --host-only`).
pub const NO_HEADERS_VAR: &str = "CAPVISOR_NO_KERNEL_HEADERS";

/// Whether [`NO_HEADERS_VAR`] is `1`.
pub fn no_headers_allowed() -> bool {
    std::env::var(NO_HEADERS_VAR).is_ok_and(|v| v == "1")
}

/// Reports that the calling check against the headers cannot run for `why`: a failure, unless
/// [`NO_HEADERS_VAR`] allows a skip ([`crate::skip::cannot_run`], which records it). The
/// caller returns right after.
#[track_caller]
pub fn cannot_check(why: &str) {
    if !no_headers_allowed() {
        panic!(
            "{why} (where a run has no installed kernel or seL4 source on purpose, {NO_HEADERS_VAR}=1 records a skip instead)"
        );
    }
    crate::skip::cannot_run(why);
}

/// [`installed_kernel_prefix`], or `None` after [`cannot_check`].
#[track_caller]
pub fn installed_kernel_prefix_or_skip() -> Option<PathBuf> {
    match installed_kernel_prefix() {
        Ok(root) => Some(root),
        Err(why) => {
            cannot_check(&why);
            None
        }
    }
}

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
