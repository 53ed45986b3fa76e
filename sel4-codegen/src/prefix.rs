//! Locating the input files of an installed kernel prefix.

use std::fmt;
use std::path::{Path, PathBuf};

/// The name of the environment variable that points at the kernel prefix.
pub const ENV_VAR: &str = "SEL4_PREFIX";

/// The path in the environment variable `var`, `None` when unset or empty. A relative path is
/// resolved against `$PWD`, the folder the user started cargo (or a script) in: build
/// scripts and tests run in their own crate's folder, where `../shared/...` as the user typed
/// it would name another place.
pub fn env_path(var: &str) -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os(var).filter(|v| !v.is_empty())?);
    Some(resolve_from_pwd(p))
}

/// `p` made absolute against `$PWD` when it is relative and `$PWD` is an absolute path.
pub fn resolve_from_pwd(p: PathBuf) -> PathBuf {
    resolve_against(p, std::env::var_os("PWD").map(PathBuf::from))
}

/// `p` joined to `cwd` when `p` is relative and `cwd` is an absolute path; else `p`.
fn resolve_against(p: PathBuf, cwd: Option<PathBuf>) -> PathBuf {
    match cwd {
        Some(cwd) if p.is_relative() && cwd.is_absolute() => cwd.join(p),
        _ => p,
    }
}

/// The seL4 interface data (XML, both flavours' `gen_config.json`, the recorded bootinfo):
/// `$CAPVISOR_SEL4_DATA`, else `../shared/sel4/16.0.0` beside the repository when it is
/// there. Tests read it here; it is never copied into the repository.
pub fn shared_data() -> Option<PathBuf> {
    env_path("CAPVISOR_SEL4_DATA").or_else(|| {
        let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/sel4/16.0.0");
        beside.is_dir().then_some(beside)
    })
}

/// An installed kernel prefix whose required files exist.
#[derive(Clone, Debug)]
pub struct Prefix {
    root: PathBuf,
}

/// Why a prefix cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrefixError {
    /// `SEL4_PREFIX` is not set.
    Unset,
    /// The prefix directory does not exist.
    NotADirectory(PathBuf),
    /// A required file is missing.
    Missing(PathBuf),
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixError::Unset => write!(
                f,
                "{ENV_VAR} is not set: point it at an installed seL4 16.0.0 kernel (bin/kernel.elf, libsel4/include/...), or at ../shared/sel4/16.0.0 for host builds without a kernel"
            ),
            PrefixError::NotADirectory(p) => {
                write!(f, "{ENV_VAR}={} is not a directory: point it at an installed seL4 kernel prefix", p.display())
            }
            PrefixError::Missing(p) => write!(
                f,
                "{} is missing: {ENV_VAR} must point at a seL4 kernel installed with `ninja install` (it needs libsel4/include with gen_config.json and the interface XML)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for PrefixError {}

/// Files every prefix must have, relative to the root.
pub const REQUIRED_FILES: [&str; 6] = [
    "libsel4/include/kernel/gen_config.json",
    "libsel4/include/sel4/gen_config.json",
    "libsel4/include/api/syscall.xml",
    "libsel4/include/interfaces/object-api.xml",
    "libsel4/include/interfaces/object-api-arch.xml",
    "libsel4/include/interfaces/object-api-sel4-arch.xml",
];

impl Prefix {
    /// The prefix named by `SEL4_PREFIX` (a relative path is taken from the folder cargo was
    /// started in: see [`env_path`]).
    pub fn from_env() -> Result<Self, PrefixError> {
        match env_path(ENV_VAR) {
            Some(p) => Self::new(p),
            None => Err(PrefixError::Unset),
        }
    }

    /// The prefix at `root`, checked for the required files.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, PrefixError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(PrefixError::NotADirectory(root));
        }
        for f in REQUIRED_FILES {
            let p = root.join(f);
            if !p.is_file() {
                return Err(PrefixError::Missing(p));
            }
        }
        Ok(Prefix { root })
    }

    /// The prefix directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside `libsel4/include`.
    pub fn include(&self, rel: &str) -> PathBuf {
        self.root.join("libsel4/include").join(rel)
    }

    /// The kernel binary, if this prefix has one (data-only prefixes used by CI do not).
    pub fn kernel_elf(&self) -> Option<PathBuf> {
        let p = self.root.join("bin/kernel.elf");
        p.is_file().then_some(p)
    }

    /// Every file generation reads, for `rerun-if-changed`: the required files and where the
    /// fault ABI is read (the C headers, or the kernel source: see [`crate::fault::Route`]).
    pub fn input_files(&self) -> Vec<PathBuf> {
        REQUIRED_FILES.iter().map(|f| self.root.join(f)).chain(crate::fault::input_files(self)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_taken_from_the_callers_folder() {
        let cwd = Some(PathBuf::from("/home/u/capvisor"));
        assert_eq!(
            resolve_against(PathBuf::from("../shared/sel4/16.0.0"), cwd.clone()),
            PathBuf::from("/home/u/capvisor/../shared/sel4/16.0.0")
        );
        assert_eq!(resolve_against(PathBuf::from("/opt/k"), cwd), PathBuf::from("/opt/k"));
        // No usable folder: the path stays as given (and the prefix check names it).
        assert_eq!(resolve_against(PathBuf::from("k"), None), PathBuf::from("k"));
        assert_eq!(resolve_against(PathBuf::from("k"), Some(PathBuf::from("rel"))), PathBuf::from("k"));
    }

    #[test]
    fn a_missing_prefix_is_named() {
        let e = Prefix::new("/nonexistent/capvisor-prefix").unwrap_err();
        assert_eq!(e, PrefixError::NotADirectory(PathBuf::from("/nonexistent/capvisor-prefix")));
        assert!(e.to_string().contains("SEL4_PREFIX=/nonexistent/capvisor-prefix is not a directory"), "{e}");
    }
}
