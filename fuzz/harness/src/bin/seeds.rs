//! `seeds CONFIGS_DIR CORPUS_DIR [TARGET...]`: writes the starting corpora of the fuzz targets
//! (all, or those named) from the VM files in `CONFIGS_DIR`, one folder per target in
//! `CORPUS_DIR`, and runs each target once on each of its seeds.

use std::path::PathBuf;
use std::process::ExitCode;

use capvisor_fuzz_harness::seeds::{TARGETS, write_all};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [configs, corpus, named @ ..] = args.as_slice() else {
        eprintln!("usage: seeds CONFIGS_DIR CORPUS_DIR [TARGET...] (targets: {})", TARGETS.join(", "));
        return ExitCode::from(2);
    };
    let targets: Vec<&str> =
        if named.is_empty() { TARGETS.to_vec() } else { named.iter().map(String::as_str).collect() };
    match write_all(&PathBuf::from(configs), &PathBuf::from(corpus), &targets) {
        Ok(counts) => {
            for (t, n) in counts {
                println!("seeds: {t}: {n}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seeds: {e}");
            ExitCode::FAILURE
        }
    }
}
