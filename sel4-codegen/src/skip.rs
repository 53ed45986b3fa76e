//! What a test does when what it needs (an installed kernel prefix, QEMU, the interface
//! data, a host C compiler) is not there. (The checks against the C headers fail instead,
//! unless `CAPVISOR_NO_KERNEL_HEADERS=1`: see [`crate::header_check`].)
//!
//! Outside CI it says `skipped: <why>` and records the test in `$CAPVISOR_SKIP_LOG` (a file
//! `scripts/check` reads), so the totals count it as skipped, never as passed. With
//! `CAPVISOR_REQUIRE_KERNEL=1` (CI) a test that cannot run fails instead.
//!
//! Owns: the skip policy for every test of the workspace. Never touches: what the test checks.

use std::io::Write as _;

/// The environment variable that turns a skip into a failure.
pub const REQUIRE_VAR: &str = "CAPVISOR_REQUIRE_KERNEL";
/// The environment variable naming the file skips are appended to.
pub const LOG_VAR: &str = "CAPVISOR_SKIP_LOG";

/// Whether tests that cannot run must fail (`CAPVISOR_REQUIRE_KERNEL=1`).
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// Reports that the calling test cannot run for `why`: panics when [`required`], else prints
/// `skipped:` and records it. The caller returns right after.
#[track_caller]
pub fn cannot_run(why: &str) {
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    if required() {
        panic!("{test} cannot run ({REQUIRE_VAR}=1 makes that a failure): {why}");
    }
    eprintln!("skipped: {why}");
    if let Some(log) = std::env::var_os(LOG_VAR).filter(|v| !v.is_empty()) {
        let line = format!("{test}\t{why}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("cannot record the skip of {test} in {}: {e}", std::path::Path::new(&log).display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: both cases set process-wide variables, which parallel tests would race on.
    #[test]
    fn skips_are_logged_and_required_ones_fail() {
        let log = std::env::temp_dir().join(format!("capvisor-skip-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        // SAFETY: this is the only test in this binary touching these variables.
        unsafe {
            std::env::set_var(LOG_VAR, &log);
            std::env::remove_var(REQUIRE_VAR);
        }
        cannot_run("no kernel");
        let text = std::fs::read_to_string(&log).expect("log written");
        assert!(text.ends_with("\tno kernel\n"), "{text:?}");
        assert!(text.contains("skips_are_logged_and_required_ones_fail"), "{text:?}");
        // SAFETY: as above.
        unsafe { std::env::set_var(REQUIRE_VAR, "1") };
        let r = std::panic::catch_unwind(|| cannot_run("no kernel"));
        // SAFETY: as above.
        unsafe {
            std::env::remove_var(REQUIRE_VAR);
            std::env::remove_var(LOG_VAR);
        }
        assert!(r.is_err(), "a required test that cannot run must fail");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), text, "a failure is not logged as a skip");
        let _ = std::fs::remove_file(&log);
    }
}
