//! The VM bundle: a system configuration and the guest images it names, as one byte string
//! the root task embeds.
//!
//! The host tool (`capvisor vms`) parses and checks the configuration, reads every image the
//! configuration names (relative to the configuration file), and writes the bundle; the root
//! task's build script includes it (`CAPVISOR_VMS`), and the root task decodes it with
//! [`Bundle::decode`], which never trusts a length and never panics.
//!
//! # Format (version 2, little-endian)
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `CVBUNDLE` |
//! | 4 | version (2) |
//! | 4 | number of VMs `n` |
//! | 8 | the real-time clock's base: seconds since 1970 when the bundle was made |
//! | 8 + `len` | the compact configuration ([`vm_config::encode_system`]), length first |
//! | per VM, 3 × (8 + `len`) | kernel, device tree, initial RAM disk: length first (0 = none) |
//! | per VM, one (8 + `len`) per `flash_images` entry | each flash bank's image, in that order |
//!
//! Every length is followed by its bytes and then zero padding up to a multiple of 8, so each
//! image starts 8-byte aligned relative to the bundle.
//!
//! Owns the byte format only; placing the images in guest memory is [`crate::setup`]'s job.

use alloc::vec::Vec;
use core::fmt;

use vm_config::{DecodeError, LoadError, SystemConfig, load_system};

/// First bytes of a bundle.
pub const MAGIC: [u8; 8] = *b"CVBUNDLE";
/// The version this build writes and reads.
pub const VERSION: u32 = 2;

/// The images of one VM, borrowed from the bundle.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct VmImages<'a> {
    /// The kernel (flat binary, loaded at `kernel_load_addr`).
    pub kernel: &'a [u8],
    /// The device tree, if the configuration names one.
    pub dtb: Option<&'a [u8]>,
    /// The initial RAM disk, if the configuration names one.
    pub ramdisk: Option<&'a [u8]>,
    /// The flash banks' images, one per `flash_images` entry, in order (trailing erased
    /// bytes may be left out: a bank reads 0xff past its image).
    pub flash: Vec<&'a [u8]>,
}

/// A decoded bundle.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Bundle<'a> {
    /// The checked configuration.
    pub system: SystemConfig,
    /// Images per VM, in configuration order.
    pub images: Vec<VmImages<'a>>,
    /// Seconds since 1970 when the bundle was made: the VMs' real-time clocks start there.
    pub rtc_base_seconds: u64,
}

/// Why bundle bytes are not usable.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BundleError {
    /// No magic.
    BadMagic,
    /// Another version.
    BadVersion(u32),
    /// A length runs past the end.
    Truncated {
        /// Offset of the length word.
        offset: usize,
    },
    /// The VM count in the header disagrees with the configuration.
    VmCount {
        /// In the header.
        header: u32,
        /// In the configuration.
        config: usize,
    },
    /// The configuration does not decode or check.
    Config(LoadError),
    /// The configuration could not be encoded (host side).
    Encode(DecodeError),
    /// A configuration names an image that was not supplied, or the reverse (host side).
    Images {
        /// Index of the VM.
        vm: usize,
    },
    /// Bytes after the last image.
    TrailingBytes {
        /// Where they start.
        offset: usize,
    },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::BadMagic => f.write_str("not a capvisor VM bundle (bad magic)"),
            BundleError::BadVersion(v) => write!(f, "bundle version {v}, this build reads {VERSION}"),
            BundleError::Truncated { offset } => {
                write!(f, "bundle truncated: length at byte {offset} runs past the end")
            }
            BundleError::VmCount { header, config } => {
                write!(f, "bundle header says {header} VMs, its configuration has {config}")
            }
            BundleError::Config(e) => write!(f, "bundle configuration: {e}"),
            BundleError::Encode(e) => write!(f, "bundle configuration does not encode: {e}"),
            BundleError::Images { vm } => write!(f, "VM {vm}: images do not match the configuration"),
            BundleError::TrailingBytes { offset } => write!(f, "bundle has trailing bytes from byte {offset}"),
        }
    }
}

impl core::error::Error for BundleError {}

fn pad8(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

fn put_blob(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
    pad8(out);
}

/// Writes a bundle (host side). `images` must have one entry per VM, with a device tree and
/// a RAM disk exactly where the configuration names one.
pub fn encode(system: &SystemConfig, images: &[VmImages<'_>], rtc_base_seconds: u64) -> Result<Vec<u8>, BundleError> {
    if images.len() != system.vms.len() {
        return Err(BundleError::Images { vm: images.len().min(system.vms.len()) });
    }
    for (i, (vm, img)) in system.vms.iter().zip(images).enumerate() {
        if vm.dtb.is_some() != img.dtb.is_some()
            || vm.ramdisk.is_some() != img.ramdisk.is_some()
            || vm.flash_images.len() != img.flash.len()
        {
            return Err(BundleError::Images { vm: i });
        }
    }
    let config = vm_config::encode_system(system).map_err(BundleError::Encode)?;
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(system.vms.len() as u32).to_le_bytes());
    out.extend_from_slice(&rtc_base_seconds.to_le_bytes());
    put_blob(&mut out, &config);
    for img in images {
        put_blob(&mut out, img.kernel);
        put_blob(&mut out, img.dtb.unwrap_or(&[]));
        put_blob(&mut out, img.ramdisk.unwrap_or(&[]));
    }
    for img in images {
        for f in &img.flash {
            put_blob(&mut out, f);
        }
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }

    fn blob(&mut self) -> Result<&'a [u8], BundleError> {
        let offset = self.at;
        let err = BundleError::Truncated { offset };
        let len = self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).ok_or(err.clone())?;
        let len = usize::try_from(len).map_err(|_| err.clone())?;
        let bytes = self.take(len).ok_or(err.clone())?;
        let pad = (8 - self.at % 8) % 8;
        self.take(pad).ok_or(err)?;
        Ok(bytes)
    }
}

/// The header and configuration at the start of a bundle: the VM count the header gives, the
/// clock's base and the decoded, checked configuration; `r` is left at the first image.
fn decode_head(r: &mut Reader<'_>) -> Result<(u32, u64, SystemConfig), BundleError> {
    if r.take(8) != Some(&MAGIC[..]) {
        return Err(BundleError::BadMagic);
    }
    let version = r.u32().ok_or(BundleError::Truncated { offset: 8 })?;
    if version != VERSION {
        return Err(BundleError::BadVersion(version));
    }
    let n = r.u32().ok_or(BundleError::Truncated { offset: 12 })?;
    let rtc_base_seconds = r
        .take(8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(BundleError::Truncated { offset: 16 })?;
    let system = load_system(r.blob()?).map_err(BundleError::Config)?;
    Ok((n, rtc_base_seconds, system))
}

/// The configuration at the start of a bundle, decoded and checked; the images after it are not
/// read (`capvisor image` finds the bundle inside a root-task ELF, where more bytes follow).
pub fn decode_system(bytes: &[u8]) -> Result<SystemConfig, BundleError> {
    decode_head(&mut Reader { bytes, at: 0 }).map(|(_, _, system)| system)
}

impl<'a> Bundle<'a> {
    /// Decodes and checks a bundle (`vm_config::load_system` runs every configuration rule).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, BundleError> {
        let mut r = Reader { bytes, at: 0 };
        let (n, rtc_base_seconds, system) = decode_head(&mut r)?;
        if usize::try_from(n).ok() != Some(system.vms.len()) {
            return Err(BundleError::VmCount { header: n, config: system.vms.len() });
        }
        let mut images = Vec::with_capacity(system.vms.len());
        for _ in 0..system.vms.len() {
            let kernel = r.blob()?;
            let dtb = r.blob()?;
            let ramdisk = r.blob()?;
            images.push(VmImages {
                kernel,
                dtb: (!dtb.is_empty()).then_some(dtb),
                ramdisk: (!ramdisk.is_empty()).then_some(ramdisk),
                flash: Vec::new(),
            });
        }
        for (vm, img) in system.vms.iter().zip(&mut images) {
            for _ in &vm.flash_images {
                img.flash.push(r.blob()?);
            }
        }
        if r.at != bytes.len() {
            return Err(BundleError::TrailingBytes { offset: r.at });
        }
        Ok(Bundle { system, images, rtc_base_seconds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_config::{GuestPhysAddr, GuestRange, Image, VmConfig};

    fn system() -> SystemConfig {
        let mut a = VmConfig::minimal(1, "a", GuestRange::new(0x4000_0000, 0x10_0000), 0x4000_0000);
        a.dtb = Some(Image { path: "a.dtb".into(), load_addr: GuestPhysAddr(0x4008_0000) });
        a.emulated.push(vm_config::EmulatedDevice {
            name: "flash1".into(),
            range: GuestRange::new(0x0400_0000, 0x0400_0000),
            irq: 0,
            kind: vm_config::EmulatedKind::CfiFlash,
            cfg: alloc::vec![1],
        });
        a.flash_images.push(vm_config::FlashImage { device: "flash1".into(), path: "vars.fd".into() });
        let b = VmConfig::minimal(2, "b", GuestRange::new(0x4000_0000, 0x10_0000), 0x4000_0000);
        SystemConfig { vms: alloc::vec![a, b] }
    }

    #[test]
    fn round_trips_with_images_aligned() {
        let sys = system();
        let images = [
            VmImages { kernel: b"kernel-a", dtb: Some(b"dtb"), ramdisk: None, flash: alloc::vec![b"vars"] },
            VmImages { kernel: b"kern-b-longer", dtb: None, ramdisk: None, flash: alloc::vec![] },
        ];
        let bytes = encode(&sys, &images, 1_700_000_000).unwrap();
        assert_eq!(bytes.len() % 8, 0);
        let b = Bundle::decode(&bytes).unwrap();
        assert_eq!(b.system, sys);
        assert_eq!(b.images, images);
        assert_eq!(b.rtc_base_seconds, 1_700_000_000);
        // Inside a root-task image more bytes follow: the configuration still reads, the whole
        // bundle does not.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xaa; 100]);
        assert_eq!(decode_system(&longer), Ok(sys.clone()));
        assert!(matches!(Bundle::decode(&longer), Err(BundleError::TrailingBytes { .. })));
        assert_eq!(decode_system(&bytes[..20]), Err(BundleError::Truncated { offset: 16 }));
        for img in &b.images {
            let off = img.kernel.as_ptr() as usize - bytes.as_ptr() as usize;
            assert_eq!(off % 8, 0, "kernel image 8-byte aligned in the bundle");
        }
    }

    #[test]
    fn refuses_mismatched_images_and_bad_bytes() {
        let sys = system();
        let missing_dtb = [VmImages { kernel: b"k", ..Default::default() }, VmImages::default()];
        assert_eq!(encode(&sys, &missing_dtb, 0), Err(BundleError::Images { vm: 0 }));
        assert_eq!(encode(&sys, &missing_dtb[..1], 0), Err(BundleError::Images { vm: 1 }));
        let missing_flash = [VmImages { kernel: b"k", dtb: Some(b"d"), ..Default::default() }, VmImages::default()];
        assert_eq!(encode(&sys, &missing_flash, 0), Err(BundleError::Images { vm: 0 }));
        let images =
            [VmImages { kernel: b"k", dtb: Some(b"d"), ramdisk: None, flash: alloc::vec![b""] }, VmImages::default()];
        let bytes = encode(&sys, &images, 0).unwrap();
        assert_eq!(Bundle::decode(b"NOTABUNDLE______"), Err(BundleError::BadMagic));
        let mut v = bytes.clone();
        v[8] = 9;
        assert_eq!(Bundle::decode(&v), Err(BundleError::BadVersion(9)));
        let mut v = bytes.clone();
        v[12] = 3;
        assert_eq!(Bundle::decode(&v), Err(BundleError::VmCount { header: 3, config: 2 }));
        let mut v = bytes.clone();
        v.extend_from_slice(&[0; 8]);
        assert!(matches!(Bundle::decode(&v), Err(BundleError::TrailingBytes { .. })));
        // Every truncation is an error, never a panic.
        for n in 0..bytes.len() {
            assert!(Bundle::decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        // A huge length word is refused.
        let mut v = bytes.clone();
        v[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(Bundle::decode(&v), Err(BundleError::Truncated { offset: 24 })));
    }
}
