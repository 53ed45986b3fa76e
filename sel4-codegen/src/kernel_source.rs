//! The kernel's own source, for what an installed prefix would have as generated C headers
//! but the interface data (a prefix without headers) does not: the fault ABI.
//!
//! The source is `$SEL4_SOURCE` (the name CMake's `-DSEL4_SOURCE=` uses too): the seL4
//! 16.0.0 release tarball, or an unpacked tree; else `../shared/sel4/seL4-16.0.0.tar.gz`
//! beside the repository when it is there. A tarball is streamed: only the members asked for
//! are decompressed into memory, and its top folder (`seL4-16.0.0/`) is not part of a path.
//!
//! Owns: finding the source and reading files from it by their path in the source tree.
//! Never touches: what the files mean (see [`crate::bf`], [`crate::c_enum`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::prefix::env_path;

/// The environment variable naming the kernel source.
pub const ENV_VAR: &str = "SEL4_SOURCE";
/// The release tarball's file name.
pub const TARBALL: &str = "seL4-16.0.0.tar.gz";

/// A seL4 source: a gzip'd tarball or a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// `*.tar.gz`, as `git archive --prefix=seL4-16.0.0/` or the upstream release makes it.
    Tarball(PathBuf),
    /// An unpacked tree (its root has `libsel4/`).
    Tree(PathBuf),
}

/// Why no source can be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceError {
    /// Neither `SEL4_SOURCE` nor the tarball beside the repository.
    NotFound,
    /// `SEL4_SOURCE` names nothing.
    Missing(PathBuf),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::NotFound => {
                write!(f, "{ENV_VAR} is not set and ../shared/sel4/{TARBALL} is not beside the repository")
            }
            SourceError::Missing(p) => {
                write!(
                    f,
                    "{ENV_VAR}={} does not exist: point it at {TARBALL} or an unpacked seL4 16.0.0 tree",
                    p.display()
                )
            }
        }
    }
}

impl std::error::Error for SourceError {}

/// A problem reading the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    /// The tarball or the file.
    pub file: PathBuf,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for ReadError {}

/// The tarball beside the repository, when it is there.
pub fn beside() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/sel4").join(TARBALL);
    p.is_file().then_some(p)
}

impl KernelSource {
    /// The source at `path`: a directory is a tree, anything else a tarball.
    pub fn at(path: PathBuf) -> Result<KernelSource, SourceError> {
        if path.is_dir() {
            Ok(KernelSource::Tree(path))
        } else if path.is_file() {
            Ok(KernelSource::Tarball(path))
        } else {
            Err(SourceError::Missing(path))
        }
    }

    /// `$SEL4_SOURCE` (relative to the folder cargo was started in), else the tarball beside
    /// the repository.
    pub fn locate() -> Result<KernelSource, SourceError> {
        match env_path(ENV_VAR) {
            Some(p) => KernelSource::at(p),
            None => beside().map(KernelSource::Tarball).ok_or(SourceError::NotFound),
        }
    }

    /// The tarball or tree.
    pub fn path(&self) -> &Path {
        match self {
            KernelSource::Tarball(p) | KernelSource::Tree(p) => p,
        }
    }

    /// How a file of the source is named in messages: the tree's file, or the tarball
    /// followed by the member's path inside the source.
    pub fn display(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// The files at `rels` (paths from the source's root, `libsel4/...`) that exist, by path.
    /// A tarball is read once, up to the last member asked for.
    pub fn read(&self, rels: &[String]) -> Result<BTreeMap<String, String>, ReadError> {
        let mut found = BTreeMap::new();
        match self {
            KernelSource::Tree(root) => {
                for rel in rels {
                    let p = root.join(rel);
                    if p.is_file() {
                        let text = std::fs::read_to_string(&p)
                            .map_err(|e| ReadError { file: p.clone(), message: format!("cannot read: {e}") })?;
                        found.insert(rel.clone(), text);
                    }
                }
            }
            KernelSource::Tarball(tarball) => {
                let err = |message: String| ReadError { file: tarball.clone(), message };
                let file = std::fs::File::open(tarball).map_err(|e| err(format!("cannot open: {e}")))?;
                let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
                let entries = archive.entries().map_err(|e| err(format!("not a gzip'd tar file: {e}")))?;
                for entry in entries {
                    if found.len() == rels.len() {
                        break;
                    }
                    let mut entry = entry.map_err(|e| err(format!("not a gzip'd tar file: {e}")))?;
                    let path = entry.path().map_err(|e| err(format!("a member's path: {e}")))?.into_owned();
                    let Some(rel) = rels.iter().find(|r| member_is(&path, r)) else { continue };
                    if found.contains_key(rel) {
                        continue;
                    }
                    let mut text = String::new();
                    entry.read_to_string(&mut text).map_err(|e| err(format!("{rel}: cannot read: {e}")))?;
                    found.insert(rel.clone(), text);
                }
            }
        }
        Ok(found)
    }
}

/// Whether the archive member `path` is `rel`, either as it stands or below the archive's
/// top folder.
fn member_is(path: &Path, rel: &str) -> bool {
    let rel = Path::new(rel);
    if path == rel {
        return true;
    }
    let mut parts = path.components();
    parts.next();
    parts.as_path() == rel
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn tarball(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
        let path = dir.join("src.tar.gz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, text) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, text.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap().flush().unwrap();
        path
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("capvisor-ksrc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_tarball_is_read_below_its_top_folder() {
        let dir = scratch("tar");
        let t = tarball(
            &dir,
            &[("seL4-16.0.0/libsel4/a.h", "A"), ("seL4-16.0.0/libsel4/b.h", "B"), ("seL4-16.0.0/other", "x")],
        );
        let src = KernelSource::at(t.clone()).unwrap();
        assert_eq!(src, KernelSource::Tarball(t.clone()));
        let got = src.read(&["libsel4/b.h".into(), "libsel4/none.h".into()]).unwrap();
        assert_eq!(got.into_iter().collect::<Vec<_>>(), [("libsel4/b.h".to_string(), "B".to_string())]);
        assert_eq!(src.display("libsel4/b.h"), t.join("libsel4/b.h"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tree_is_read_from_its_root() {
        let dir = scratch("tree");
        std::fs::create_dir_all(dir.join("libsel4")).unwrap();
        std::fs::write(dir.join("libsel4/a.h"), "A").unwrap();
        let src = KernelSource::at(dir.clone()).unwrap();
        let got = src.read(&["libsel4/a.h".into(), "libsel4/b.h".into()]).unwrap();
        assert_eq!(got.get("libsel4/a.h").map(String::as_str), Some("A"));
        assert_eq!(got.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_or_broken_source_is_named() {
        let e = KernelSource::at(PathBuf::from("/nonexistent/seL4.tar.gz")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SEL4_SOURCE=/nonexistent/seL4.tar.gz does not exist: point it at seL4-16.0.0.tar.gz or an unpacked seL4 16.0.0 tree"
        );
        let dir = scratch("broken");
        std::fs::write(dir.join("x.tar.gz"), "not gzip").unwrap();
        let e = KernelSource::at(dir.join("x.tar.gz")).unwrap().read(&["a".into()]).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{}: ", dir.join("x.tar.gz").display())), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn members_match_with_or_without_the_top_folder() {
        assert!(member_is(Path::new("seL4-16.0.0/libsel4/a.bf"), "libsel4/a.bf"));
        assert!(member_is(Path::new("libsel4/a.bf"), "libsel4/a.bf"));
        assert!(!member_is(Path::new("x/y/libsel4/a.bf"), "libsel4/a.bf"));
        assert!(!member_is(Path::new("seL4-16.0.0/libsel4/a.bf.orig"), "libsel4/a.bf"));
    }
}
