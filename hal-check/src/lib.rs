//! Checks of `hal-sel4` that run unchanged on the seL4 model (host tests) and on the real
//! kernel (the root task's `selftest-hal` mode), so the two can be compared.
//!
//! - [`counting`]: a kernel wrapper that counts calls by kind (the real kernel counts none);
//! - [`layout`]: the ranges to test, found in the HAL's own untyped list;
//! - [`state`]: snapshots of the HAL's bookkeeping and the full check against the kernel;
//! - [`trace`]: the [`trace::Driver`], HAL operations that each print one comparable line;
//! - [`scenarios`]: refusals leave nothing behind, reuse of a range, overlaps, a region over
//!   two untypeds, device memory, translation against `Page_GetAddress`, kernel objects;
//! - [`random`]: a seeded random operation sequence with its expected outcomes;
//! - [`diff`]: comparing two traces, and the console prefixes the root task prints;
//! - [`bench`](mod@bench): allocation cost against the lower bound, and wall time per MiB;
//! - `replay` (host only): the same run on `sel4_model::Model`, booted like the root task.
//!
//! [`run_all`] runs scenarios, then the random sequence, then a last full check, all traced.
//! Everything is `no_std` + `alloc` and generic over [`sel4::Kernel`]; nothing here is unsafe.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bench;
pub mod counting;
pub mod diff;
pub mod layout;
pub mod random;
#[cfg(not(target_os = "none"))]
pub mod replay;
pub mod scenarios;
pub mod state;
pub mod trace;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use sel4::Kernel;

pub use counting::{Counting, Counts, counting};
pub use layout::Layout;
pub use trace::Driver;

/// A check that did not hold: what was expected and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The explanation.
    pub what: String,
}

impl Failure {
    /// A failure saying `what`.
    pub fn new(what: String) -> Self {
        Failure { what }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

/// Returns a [`Failure`] built with `format!` unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::Failure::new(alloc::format!($($arg)*)));
        }
    };
}

/// What [`run_all`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Seed of the random sequence.
    pub seed: u64,
    /// Operations in the random sequence.
    pub ops: usize,
    /// Whether full checks probe every free slot in the kernel.
    pub probe_slots: bool,
}

impl Config {
    /// The configuration the root task's self-test and the host replay share.
    pub const SELFTEST: Config = Config { seed: 0x5eed_c0de_2026_0004, ops: 1200, probe_slots: true };
}

/// What [`run_all`] found.
#[derive(Debug)]
pub struct Outcome {
    /// Each scenario and its failure, if any.
    pub scenarios: Vec<(&'static str, Option<Failure>)>,
    /// The random sequence.
    pub random: Result<random::Stats, Failure>,
    /// The last full check.
    pub last_check: Result<state::CheckSummary, Failure>,
}

impl Outcome {
    /// Number of failed parts.
    pub fn failures(&self) -> usize {
        self.scenarios.iter().filter(|(_, f)| f.is_some()).count()
            + usize::from(self.random.is_err())
            + usize::from(self.last_check.is_err())
    }

    /// The first failure, named.
    pub fn first_failure(&self) -> Option<(&'static str, &Failure)> {
        self.scenarios
            .iter()
            .find_map(|(n, f)| f.as_ref().map(|f| (*n, f)))
            .or_else(|| self.random.as_ref().err().map(|f| ("random", f)))
            .or_else(|| self.last_check.as_ref().err().map(|f| ("last check", f)))
    }
}

/// Runs every scenario, then the random sequence of `config`, then a full check, tracing all
/// of it through `driver`.
pub fn run_all<K: Kernel>(driver: &mut Driver<'_, K>, config: &Config) -> Outcome {
    driver.probe_slots = config.probe_slots;
    let layout = Layout::of(driver.hal());
    driver.note(format_args!(
        "hal-check: {} roots, slots {}..{}, seed {:#x}, {} random operations",
        layout.roots().len(),
        driver.region().start.index(),
        driver.region().end.index(),
        config.seed,
        config.ops
    ));
    let mut scenarios = Vec::new();
    for s in scenarios::all::<K>() {
        driver.note(format_args!("scenario {}", s.name));
        let r = (s.run)(driver, &layout);
        match &r {
            Ok(()) => driver.note(format_args!("scenario {}: ok", s.name)),
            Err(f) => driver.note(format_args!("scenario {}: FAILED: {f}", s.name)),
        }
        scenarios.push((s.name, r.err()));
    }
    driver.note(format_args!("random sequence"));
    let random = random::run(driver, &layout, config.seed, config.ops);
    match &random {
        Ok(s) => driver.note(format_args!("random: ok {s}")),
        Err(f) => driver.note(format_args!("random: FAILED: {f}")),
    }
    let last_check = driver.check();
    let out = Outcome { scenarios, random, last_check };
    driver.note(format_args!("hal-check: {} failures, {} operations", out.failures(), driver.operations()));
    out
}
