//! libFuzzer entry for `vm_file`: see `capvisor_fuzz_harness::vm_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| capvisor_fuzz_harness::vm_file::run(data));
