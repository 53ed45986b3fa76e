//! The two routes to the fault ABI give the same values: an installed kernel's C headers
//! (`SEL4_KERNEL_PREFIX`, else `SEL4_PREFIX`, e.g. the CMake build's build/sel4/release/prefix)
//! and the kernel's source (`SEL4_SOURCE`, else ../shared/sel4/seL4-16.0.0.tar.gz beside the
//! repository) read for that kernel's configuration. Host builds against the interface data
//! take the second route, kernel builds the first; this is what makes them one ABI.
//!
//! CI has both (the kernel is built from the tarball). Without either the test fails, saying
//! which; `CAPVISOR_NO_KERNEL_HEADERS=1` makes that a recorded skip instead (see
//! sel4_codegen::header_check), and `CAPVISOR_REQUIRE_KERNEL=1` a failure again.

use sel4_codegen::fault::{FaultAbi, Headers, Route};
use sel4_codegen::header_check::{cannot_check, installed_kernel_prefix_or_skip};
use sel4_codegen::kernel_source::KernelSource;
use sel4_codegen::{KernelConfig, Prefix};

#[test]
fn the_source_and_the_installed_headers_give_the_same_fault_abi() {
    let Some(root) = installed_kernel_prefix_or_skip() else { return };
    let source = match KernelSource::locate() {
        Ok(s) => s,
        Err(why) => {
            cannot_check(&format!("no seL4 source to compare the headers with: {why}"));
            return;
        }
    };
    let prefix = Prefix::new(&root).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Route::for_prefix(&prefix), Ok(Route::Headers), "a prefix with headers is read through them");
    let config = KernelConfig::load(&prefix).unwrap_or_else(|e| panic!("{e}"));
    let from_headers = FaultAbi::from_headers(&Headers::load(&prefix).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    let from_source = FaultAbi::from_source(&source, &config).unwrap_or_else(|e| panic!("{e}"));

    let (h, s) = (from_headers.header_values(), from_source.header_values());
    assert!(h.len() >= 8 + 7, "the labels and every layout: {h:?}");
    assert_eq!(s, h, "HEADER_VALUES from {} and from {}", source.path().display(), root.display());
    let names = |abi: &FaultAbi| abi.labels.iter().map(|c| c.rust_name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&from_source), names(&from_headers), "the label constants' Rust names");
    assert_eq!(from_source.layouts, from_headers.layouts, "the layouts, field by field");
    eprintln!("{} fault ABI values: {} (source) = {} (headers)", h.len(), source.path().display(), root.display());
}
