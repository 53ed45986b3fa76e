//! `vm-config-check FILE...`: parse and check capvisor system or VM files, print every error
//! as `file:line:column: field: message`, or a one-line summary per VM.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: vm-config-check FILE...");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for f in &files {
        match vm_config::parse_system_file(Path::new(f)) {
            Ok(sys) => {
                for vm in &sys.vms {
                    let ram: u64 = vm.memory.iter().map(|m| m.range.size_bytes).sum();
                    println!(
                        "{f}: ok: VM {} {:?}: {} vCPU(s), {} MiB RAM in {} region(s), {} emulated, {} passthrough device(s)",
                        vm.id,
                        vm.name,
                        vm.cpu_num,
                        ram >> 20,
                        vm.memory.len(),
                        vm.emulated.len(),
                        vm.passthrough.len()
                    );
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
