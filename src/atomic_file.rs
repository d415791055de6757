//! The one way this project writes a file: a failure, a kill or a concurrent writer never
//! leaves a half-written or mixed file in place of a good one, and nothing is written
//! through a symbolic link.
//!
//! The bytes go to a temporary file with a fresh random name, created exclusively in the
//! target's folder (so it can never be a link planted in advance, nor another writer's
//! file), synced, then renamed over the target in one step. Of several writers to one
//! path, the last rename wins and the file is always one writer's whole output.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use tempfile::NamedTempFile;

/// Writes `bytes` to `path` atomically (see the module's documentation).
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |file| Ok(file.write_all(bytes)?))
}

/// Writes `path` atomically with `fill`, which gets the temporary file to write into.
pub fn write_with(path: &Path, fill: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    write_temporary(path, |temporary| fill(temporary.as_file_mut()))
}

/// Writes `path` atomically with `fill`, which gets the temporary file's path: for writers
/// that only take a path (candle's safetensors). The temporary file exists, empty, when
/// `fill` is called. Such a writer reopens the file by name, so in a folder that other
/// users can write to, [`write_with`] is the safer of the two.
pub fn write_via_path(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    write_temporary(path, |temporary| fill(temporary.path()))
}

fn write_temporary(path: &Path, fill: impl FnOnce(&mut NamedTempFile) -> Result<()>) -> Result<()> {
    check_target(path)?;
    let (dir, name) = split(path)?;
    remove_stale_temporaries(dir, &name);
    // A replaced file keeps its mode; a new one gets what `File::create` would give (the
    // umask decides), not tempfile's private 0600.
    let mode = std::fs::metadata(path).map_or(0o666, |m| m.permissions().mode() & 0o7777);
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(PARTIAL)
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| {
            format!("cannot write {}: cannot create a temporary file in {}", path.display(), dir.display())
        })?;
    (|| -> Result<()> {
        fill(&mut temporary)?;
        temporary.as_file().sync_all()?;
        Ok(())
    })()
    .with_context(|| format!("cannot write {}", path.display()))?;
    // Checked again: the target may have been replaced while the bytes were written.
    check_target(path)?;
    // The umask may have narrowed the mode at creation; a replaced file keeps its own.
    if mode != 0o666 {
        temporary.as_file().set_permissions(Permissions::from_mode(mode))?;
    }
    temporary.persist(path).map_err(|e| e.error).with_context(|| format!("cannot write {}", path.display()))?;
    // Make the rename itself durable; a folder that cannot be synced is not an error.
    if let Ok(folder) = File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}

/// The suffix of temporary files.
const PARTIAL: &str = ".partial";
/// A temporary file older than this was left by a writer that was killed.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Removes temporary files of `name` left in `dir` by writers killed mid-write (a killed
/// training run would otherwise leave a checkpoint-sized file at every kill). Only old
/// ones: a younger one may belong to a writer still at work.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let ours = file_name.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(PARTIAL)).is_some_and(|random| {
            !random.is_empty() && !random.contains('.') && random.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        let stale = entry
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if ours && stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Refuses a target that exists and is not a regular file (a symbolic link, a FIFO, a
/// device, a folder): writing would replace it or write through it.
pub fn check_target(path: &Path) -> Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    };
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    bail!(
        "will not write {}: it is {what}; name a regular file (or `-` for standard output where offered)",
        path.display()
    )
}

/// Refuses an output that is the input file itself (by device and inode, so another
/// spelling of the same path or a hard link is caught too).
pub fn check_not_input(input: &Path, output: &Path) -> Result<()> {
    if let (Ok(a), Ok(b)) = (std::fs::metadata(input), std::fs::metadata(output)) {
        if a.dev() == b.dev() && a.ino() == b.ino() {
            bail!("will not write over the input {}: name another output file", input.display());
        }
    }
    Ok(())
}

/// The target's folder (`.` for a bare name) and file name.
fn split(path: &Path) -> Result<(&Path, String)> {
    let Some(name) = path.file_name() else {
        bail!("cannot write {}: it does not name a file", path.display());
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Ok((dir, name.to_string_lossy().into_owned()))
}
