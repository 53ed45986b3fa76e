//! libFuzzer entry for `guest_fdt`: see `capvisor_fuzz_harness::guest_fdt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| capvisor_fuzz_harness::guest_fdt::run(data));
