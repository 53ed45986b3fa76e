//! `capvisor dtb VM.toml -o OUT.dtb`: the device tree capvisor generates for a VM, written
//! to a file (inspect it with `dtc -I dtb -O dts OUT.dtb`), after checking the VM's Linux
//! boot placement against its kernel's `Image` header when the kernel file is there.
//!
//! Owns: reading the VM file and the images it names (paths relative to the VM file), and
//! the messages naming them. Never touches: what goes in the tree (vm-runner's `fdt`) or
//! the boot protocol's rules (vm-runner's `linux`).

use std::path::{Path, PathBuf};

use vm_config::{GuestRange, VmConfig};
use vm_runner::fdt::{self, DtbSource};
use vm_runner::linux::{HEADER_SIZE, ImageHeader, LinuxBoot};

/// Arguments of `capvisor dtb`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A VM file (axvisor format with `[capvisor]`).
    pub config: PathBuf,
    /// Where to write the device tree.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
}

/// What went wrong, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DtbError {
    /// The configuration does not parse or check.
    #[error("{0}")]
    Config(#[from] vm_config::ConfigErrors),
    /// A system file of several VMs: name one VM file instead.
    #[error("{}: {count} VMs: give one VM file", path.display())]
    NotOneVm {
        /// The file.
        path: PathBuf,
        /// Its VMs.
        count: usize,
    },
    /// The VM brings its own device tree or has none.
    #[error("{}: kernel.{what}: nothing to generate", path.display())]
    NotGenerated {
        /// The file.
        path: PathBuf,
        /// Why.
        what: &'static str,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The kernel cannot boot as placed.
    #[error("{}: {err}", path.display())]
    Linux {
        /// The kernel or configuration file.
        path: PathBuf,
        /// Why.
        err: vm_runner::linux::LinuxError,
    },
    /// The tree cannot be generated.
    #[error("{}: {err}", path.display())]
    Fdt {
        /// The configuration file.
        path: PathBuf,
        /// Why.
        err: vm_runner::fdt::FdtError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DtbError + '_ {
    move |source| DtbError::Io { path: path.to_path_buf(), source }
}

/// The device tree of the one VM in `config_path`, checked against its kernel when the
/// kernel file exists; returns the VM and the blob.
pub fn generate_for(config_path: &Path) -> Result<(VmConfig, Vec<u8>), DtbError> {
    let sys = vm_config::parse_system_file(config_path)?;
    if sys.vms.len() != 1 {
        return Err(DtbError::NotOneVm { path: config_path.to_path_buf(), count: sys.vms.len() });
    }
    let vm = sys.vms.into_iter().next().expect("one VM");
    match DtbSource::of(&vm) {
        DtbSource::Generate => {}
        DtbSource::File(_) => {
            return Err(DtbError::NotGenerated { path: config_path.to_path_buf(), what: "dtb_path is set" });
        }
        DtbSource::None => {
            return Err(DtbError::NotGenerated { path: config_path.to_path_buf(), what: "dtb_load_addr is not set" });
        }
    }
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let initrd = match &vm.ramdisk {
        Some(rd) => {
            let p = dir.join(&rd.path);
            let len = std::fs::metadata(&p).map_err(io(&p))?.len();
            Some(GuestRange::new(rd.load_addr.0, len))
        }
        None => None,
    };
    let blob = fdt::generate(&vm, initrd).map_err(|err| DtbError::Fdt { path: config_path.to_path_buf(), err })?;
    let kernel = dir.join(&vm.kernel.path);
    if kernel.is_file() {
        let len = std::fs::metadata(&kernel).map_err(io(&kernel))?.len();
        let mut head = vec![0u8; HEADER_SIZE];
        std::io::Read::read_exact(&mut std::fs::File::open(&kernel).map_err(io(&kernel))?, &mut head)
            .map_err(io(&kernel))?;
        let header = ImageHeader::parse(&head, len).map_err(|err| DtbError::Linux { path: kernel.clone(), err })?;
        LinuxBoot::check(&vm, &header, initrd.map(|r| r.size_bytes), blob.len() as u64)
            .map_err(|err| DtbError::Linux { path: config_path.to_path_buf(), err })?;
    }
    Ok((vm, blob))
}

/// Runs `capvisor dtb`.
pub fn run(args: &Args) -> Result<(), DtbError> {
    let (vm, blob) = generate_for(&args.config)?;
    std::fs::write(&args.out, &blob).map_err(io(&args.out))?;
    println!(
        "{}: VM {:?}: {} bytes of device tree for {:#x}",
        args.out.display(),
        vm.name,
        blob.len(),
        vm.dtb.as_ref().map_or(0, |d| d.load_addr.0)
    );
    Ok(())
}
