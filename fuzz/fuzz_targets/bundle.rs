//! libFuzzer entry for `bundle`: see `capvisor_fuzz_harness::bundle`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| capvisor_fuzz_harness::bundle::run(data));
