//! Target `vm_file`: the VM file parser and its checks, as `capvisor` runs them on the user's
//! files.
//!
//! Input: text (invalid UTF-8 replaced), split at NUL bytes (which TOML never contains). The
//! first part is parsed as a VM file ([`vm_config::parse_vm_str`], which runs every check)
//! and as a system file ([`vm_config::parse_system_str`]), whose loader hands out the
//! other parts in order, one per VM file the system names.
//!
//! Invariants: an error list is never empty and every error has a line and column; a system
//! that parsed encodes to bytes the root task decodes to the same system and accepts
//! ([`vm_config::load_system`]).

use vm_config::{DecodeError, SystemConfig};

/// What separates the files of one input.
pub const SEPARATOR: char = '\0';

/// One input.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut files = text.split(SEPARATOR);
    let main = files.next().unwrap_or("");
    let others: Vec<&str> = files.collect();

    match vm_config::parse_vm_str("fuzz.toml", main) {
        Ok(vm) => round_trip(&SystemConfig { vms: vec![vm] }),
        Err(e) => named(&e),
    }

    let mut next = 0;
    let mut load = |name: &str| -> Result<(String, String), String> {
        let text = others.get(next).ok_or_else(|| format!("{name}: no such file"))?;
        next += 1;
        Ok((format!("vm{next}.toml"), text.to_string()))
    };
    match vm_config::parse_system_str("fuzz.toml", main, &mut load) {
        Ok(sys) => round_trip(&sys),
        Err(e) => named(&e),
    }
}

/// Every error says where: the promise of the parser's module docs.
fn named(errors: &vm_config::ConfigErrors) {
    assert!(!errors.0.is_empty(), "an empty error list");
    for e in &errors.0 {
        assert!(e.line >= 1 && e.column >= 1, "no position: {e:?}");
        let _ = e.to_string();
    }
}

/// What the host tool writes, the root task must read back unchanged and accept.
fn round_trip(sys: &SystemConfig) {
    match vm_config::encode_system(sys) {
        Ok(bytes) => match vm_config::load_system(&bytes) {
            Ok(back) => assert_eq!(&back, sys, "the encoding changed the system"),
            Err(e) => panic!("a checked system's encoding is refused by the root task: {e}"),
        },
        // A list or string past the encoding's u16 counts: the tool reports it.
        Err(DecodeError::TooLong(_)) => {}
        Err(e) => panic!("encoding a checked system: {e}"),
    }
}
