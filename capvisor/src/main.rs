//! The capvisor command-line tool. Each subcommand lives in its own module with an `Args`
//! struct and a `run` function; this file only dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod image;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Image(args) => image::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capvisor: error: {e}");
            ExitCode::FAILURE
        }
    }
}
