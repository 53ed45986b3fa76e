//! The capvisor command-line tool. Each subcommand lives in its own module with an `Args`
//! struct and a `run` function; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench_linux;
mod dtb;
mod image;
mod placement;
mod plan;
mod svg;
mod vms;

/// capvisor: a hypervisor on seL4.
#[derive(Parser, Debug)]
#[command(name = "capvisor", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pack the seL4 kernel and a root task into the loader: a bootable image.
    Image(image::Args),
    /// Write the device tree capvisor generates for a VM (checked against its kernel).
    Dtb(dtb::Args),
    /// Build the configured VMs on the seL4 model and print the capability plan.
    Plan(plan::Args),
    /// Pack a system's configuration and guest images into the bundle the root task embeds.
    Vms(vms::Args),
    /// Time Linux's boot under capvisor against the same kernel booted directly by QEMU.
    BenchLinux(bench_linux::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Image(args) => image::run(&args).map_err(|e| e.to_string()),
        Command::Dtb(args) => dtb::run(&args).map_err(|e| e.to_string()),
        Command::Plan(args) => plan::run(&args).map_err(|e| e.to_string()),
        Command::Vms(args) => vms::run(&args).map_err(|e| e.to_string()),
        Command::BenchLinux(args) => bench_linux::run(&args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capvisor: error: {e}");
            ExitCode::FAILURE
        }
    }
}
