//! libFuzzer entry for `vm_exits`: see `capvisor_fuzz_harness::vm_exits`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| capvisor_fuzz_harness::vm_exits::run(data));
