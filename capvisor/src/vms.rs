//! `capvisor vms CONFIG -o BUNDLE`: packs a system (or one VM) and the guest images it names
//! into the VM bundle the root task embeds (`vm_runner::bundle`).
//!
//! Image paths are taken relative to the configuration file given (a system's VM files sit
//! beside it); a path not found there is looked up in each `--search` directory, as written
//! and by its file name, so a configuration can name a guest by the name its build gives it
//! (`kernel_path = "test-guest"`, found in cargo's output directory). A kernel that is an
//! ELF file is flattened: its loadable segments laid out by physical address from
//! `kernel_load_addr`. Device trees are the file the configuration names or, when it names
//! a load address and no file, the tree capvisor generates (`capvisor dtb`).
//!
//! Owns: finding and reading image files, flattening ELF kernels, and messages naming the
//! file. Never touches: the bundle's byte format or the configuration rules.

use std::path::{Path, PathBuf};

use boot_image::elf::Elf;
use vm_config::{SystemConfig, VmConfig};
use vm_runner::bundle::{self, VmImages};

/// Arguments of `capvisor vms`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A system file (`[system] vms = [...]`) or one VM file.
    pub config: PathBuf,
    /// Directories to look for image files in when a path is not found beside the
    /// configuration (repeatable).
    #[arg(long)]
    pub search: Vec<PathBuf>,
    /// Where to write the bundle.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
}

/// What went wrong, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum VmsError {
    /// The configuration does not parse or check.
    #[error("{0}")]
    Config(#[from] vm_config::ConfigErrors),
    /// An image file is nowhere to be found.
    #[error("{}: VM {vm}: {field} = {path:?} not found beside the configuration or in {searched}", config.display())]
    NotFound {
        /// The configuration.
        config: PathBuf,
        /// The VM's name.
        vm: String,
        /// The field.
        field: &'static str,
        /// The path as written.
        path: String,
        /// Where it looked.
        searched: String,
    },
    /// The platform the placement check needs could not be read.
    #[error("placement check: {0}")]
    Platform(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An ELF kernel that cannot be flattened at the configured address.
    #[error("{}: {message}", path.display())]
    Elf {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The device tree.
    #[error("{0}")]
    Dtb(#[from] crate::dtb::DtbError),
    /// The bundle.
    #[error("{}: {error}", config.display())]
    Bundle {
        /// Why.
        error: bundle::BundleError,
        /// The configuration.
        config: PathBuf,
    },
}

/// The images of one VM, read.
#[derive(Clone, Debug, Default)]
pub struct Images {
    /// The kernel, flat.
    pub kernel: Vec<u8>,
    /// Where the kernel came from.
    pub kernel_path: PathBuf,
    /// The device tree.
    pub dtb: Option<Vec<u8>>,
    /// The RAM disk.
    pub ramdisk: Option<Vec<u8>>,
    /// The flash banks' images (`capvisor.flash_images`, in order), trailing erased bytes
    /// (0xff) left out.
    pub flash: Vec<Vec<u8>>,
}

impl Images {
    /// The images as the bundle takes them.
    pub fn view(&self) -> VmImages<'_> {
        VmImages {
            kernel: &self.kernel,
            dtb: self.dtb.as_deref(),
            ramdisk: self.ramdisk.as_deref(),
            flash: self.flash.iter().map(Vec::as_slice).collect(),
        }
    }
}

/// The real-time clocks' base: `SOURCE_DATE_EPOCH` when set (reproducible bundles), else the
/// time the bundle is made.
pub fn rtc_base_seconds() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    })
}

/// Finds an image file: beside the configuration, then in each search directory (as
/// written, then by file name).
pub fn find(
    config: &Path,
    vm: &VmConfig,
    field: &'static str,
    path: &str,
    search: &[PathBuf],
) -> Result<PathBuf, VmsError> {
    let dir = config.parent().unwrap_or(Path::new("."));
    let mut tried = vec![dir.join(path)];
    let name = Path::new(path).file_name().map(PathBuf::from);
    for s in search {
        tried.push(s.join(path));
        if let Some(n) = &name {
            tried.push(s.join(n));
        }
    }
    tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| VmsError::NotFound {
        config: config.to_path_buf(),
        vm: vm.name.clone(),
        field,
        path: path.to_string(),
        searched: if search.is_empty() {
            "no --search directory".to_string()
        } else {
            search.iter().map(|s| s.display().to_string()).collect::<Vec<_>>().join(", ")
        },
    })
}

fn read(path: &Path) -> Result<Vec<u8>, VmsError> {
    std::fs::read(path).map_err(|source| VmsError::Io { path: path.to_path_buf(), source })
}

/// The kernel as it lies in guest memory from `load`: an ELF's loadable segments by physical
/// address (the first at `load`), anything else as it is.
pub fn flatten(bytes: Vec<u8>, load: u64, path: &Path) -> Result<Vec<u8>, VmsError> {
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(bytes);
    }
    let err = |message: String| VmsError::Elf { path: path.to_path_buf(), message };
    let elf = Elf::parse(&bytes).map_err(|e| err(e.to_string()))?;
    let segments: Vec<_> = elf.load_segments().filter(|s| s.filesz > 0).collect();
    let lo = segments.iter().map(|s| s.paddr).min().ok_or_else(|| err("no loadable segment".into()))?;
    if lo != load {
        return Err(err(format!("first loadable segment at {lo:#x}, the configuration loads the kernel at {load:#x}")));
    }
    let hi = segments.iter().map(|s| s.paddr + s.filesz).max().unwrap_or(lo);
    let len = usize::try_from(hi - lo).map_err(|_| err("segments span too much".into()))?;
    let mut flat = vec![0u8; len];
    for s in &segments {
        let off = (s.paddr - lo) as usize;
        let data = elf.segment_data(s);
        flat[off..off + data.len()].copy_from_slice(data);
    }
    Ok(flat)
}

/// Reads every image of every VM of the system in `config`.
pub fn load(config: &Path, search: &[PathBuf]) -> Result<(SystemConfig, Vec<Images>), VmsError> {
    let sys = vm_config::parse_system_file(config)?;
    let dir = config.parent().unwrap_or(Path::new("."));
    let mut all = Vec::new();
    for vm in &sys.vms {
        let kp = find(config, vm, "kernel.kernel_path", &vm.kernel.path, search)?;
        let kernel = flatten(read(&kp)?, vm.kernel.load_addr.get(), &kp)?;
        let ramdisk = match &vm.ramdisk {
            Some(r) => Some(read(&find(config, vm, "kernel.ramdisk_path", &r.path, search)?)?),
            None => None,
        };
        let dtb = crate::dtb::device_tree(vm, dir, config)?;
        let mut flash = Vec::new();
        for f in &vm.flash_images {
            let mut bytes = read(&find(config, vm, "capvisor.flash_images", &f.path, search)?)?;
            // A firmware file padded to its bank's size carries mostly erased bytes.
            let used = bytes.iter().rposition(|&b| b != 0xff).map_or(0, |i| i + 1);
            bytes.truncate(used);
            flash.push(bytes);
        }
        all.push(Images { kernel, kernel_path: kp, dtb, ramdisk, flash });
    }
    Ok((sys, all))
}

/// `capvisor vms`.
pub fn run(args: &Args) -> Result<(), VmsError> {
    let (sys, images) = load(&args.config, &args.search)?;
    let views: Vec<VmImages<'_>> = images.iter().map(Images::view).collect();
    let bytes = bundle::encode(&sys, &views, rtc_base_seconds())
        .map_err(|error| VmsError::Bundle { error, config: args.config.clone() })?;
    // Nothing is written for VMs that cannot sit where their files put them.
    let mem = crate::placement::for_bundle(bytes.len() as u64, None).map_err(VmsError::Platform)?;
    vm_config::check_placement_file(&args.config, &sys, &mem)?;
    std::fs::write(&args.out, &bytes).map_err(|source| VmsError::Io { path: args.out.clone(), source })?;
    for (vm, i) in sys.vms.iter().zip(&images) {
        println!(
            "{}: kernel {} ({} bytes at {:#x}){}{}",
            vm.name,
            i.kernel_path.display(),
            i.kernel.len(),
            vm.kernel.load_addr.get(),
            i.dtb.as_ref().map_or(String::new(), |d| format!(", device tree {} bytes", d.len())),
            i.ramdisk.as_ref().map_or(String::new(), |r| format!(", RAM disk {} bytes", r.len())),
        );
        for (f, bytes) in vm.flash_images.iter().zip(&i.flash) {
            println!("{}: flash {} from {} ({} bytes before the erased tail)", vm.name, f.device, f.path, bytes.len());
        }
    }
    println!("{}: {} VMs, {} bytes", args.out.display(), sys.vms.len(), bytes.len());
    Ok(())
}
