//! libFuzzer entry for `boot_payload`: see `capvisor_fuzz_harness::boot_payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| capvisor_fuzz_harness::boot_payload::run(data));
