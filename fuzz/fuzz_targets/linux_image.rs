//! libFuzzer entry for `linux_image`: see `capvisor_fuzz_harness::linux_image`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| capvisor_fuzz_harness::linux_image::run(data));
