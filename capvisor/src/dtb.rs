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
use vm_runner::linux::{ImageHeader, LinuxBoot, LinuxError};

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

/// The device tree `vm` gets, with image paths relative to `dir`: its `dtb_path` file, the
/// generated tree (with the initrd's range in `/chosen`), or none. For `capvisor dtb` and for
/// whatever packs a VM's images.
pub fn device_tree(vm: &VmConfig, dir: &Path, config_path: &Path) -> Result<Option<Vec<u8>>, DtbError> {
    match DtbSource::of(vm) {
        DtbSource::File(p) => {
            let p = dir.join(p);
            std::fs::read(&p).map(Some).map_err(io(&p))
        }
        DtbSource::None => Ok(None),
        DtbSource::Generate => {
            let initrd = match &vm.ramdisk {
                Some(rd) => {
                    let p = dir.join(&rd.path);
                    let len = std::fs::metadata(&p).map_err(io(&p))?.len();
                    Some(GuestRange::new(rd.load_addr.0, len))
                }
                None => None,
            };
            fdt::generate(vm, initrd).map(Some).map_err(|err| DtbError::Fdt { path: config_path.to_path_buf(), err })
        }
    }
}

/// Checks a Linux kernel's placement (`kernel` starts with an arm64 `Image` header) against
/// `vm`; `Ok(None)` for a kernel without the header's magic (a bare-metal guest, which the
/// boot protocol does not bind).
pub fn check_linux(
    vm: &VmConfig,
    kernel: &[u8],
    kernel_path: &Path,
    initrd_len: Option<u64>,
    dtb_len: u64,
    config_path: &Path,
) -> Result<Option<LinuxBoot>, DtbError> {
    let header = match ImageHeader::parse(kernel, kernel.len() as u64) {
        Ok(h) => h,
        Err(LinuxError::BadMagic(_) | LinuxError::TooShort(_)) => return Ok(None),
        Err(err) => return Err(DtbError::Linux { path: kernel_path.to_path_buf(), err }),
    };
    LinuxBoot::check(vm, &header, initrd_len, dtb_len)
        .map(Some)
        .map_err(|err| DtbError::Linux { path: config_path.to_path_buf(), err })
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
    let blob = device_tree(&vm, dir, config_path)?.unwrap_or_default();
    let kernel = dir.join(&vm.kernel.path);
    if kernel.is_file() {
        let bytes = std::fs::read(&kernel).map_err(io(&kernel))?;
        let initrd_len = match &vm.ramdisk {
            Some(rd) => Some(std::fs::metadata(dir.join(&rd.path)).map_err(io(&dir.join(&rd.path)))?.len()),
            None => None,
        };
        check_linux(&vm, &bytes, &kernel, initrd_len, blob.len() as u64, config_path)?;
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
