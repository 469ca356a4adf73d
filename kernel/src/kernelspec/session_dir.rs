//! The per-process session directory: a 0700 directory of this process in the
//! runtime dir that holds the connection files and Unix sockets of the kernels
//! it starts, locked with `flock` for as long as the process lives. A process
//! killed outright cannot remove its files, so each pxkernel removes the
//! directories whose lock nobody holds any more: their owners are gone, and the
//! kernel frees the lock with the owner's last fd.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::runtime_dir;
use crate::protocol::new_uuid;

/// Prefix of the per-process directories in the runtime dir.
const SESSION_DIR_PREFIX: &str = "pxk-";

static SESSION_DIR: OnceLock<Result<(PathBuf, std::fs::File), String>> = OnceLock::new();

/// This process's directory for the connection files and sockets of the kernels
/// it starts, made (0700) and locked on first use, after removing the
/// directories of pxkernels that are gone.
pub fn session_dir() -> std::io::Result<&'static std::path::Path> {
    match SESSION_DIR.get_or_init(|| make_session_dir(&runtime_dir()).map_err(|e| e.to_string())) {
        Ok((dir, _lock)) => Ok(dir),
        Err(e) => Err(std::io::Error::other(e.clone())),
    }
}

/// Remove this process's directory, once the kernels it started have stopped.
pub fn remove_session_dir() {
    if let Some(Ok((dir, _lock))) = SESSION_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn make_session_dir(runtime: &std::path::Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(runtime)?;
    remove_abandoned(runtime);
    // Made and locked under a name no sweep takes, then renamed into place, so
    // another pxkernel's sweep never sees it unlocked.
    let id = &new_uuid()[..8];
    let making = runtime.join(format!(".{SESSION_DIR_PREFIX}{id}"));
    let dir = runtime.join(format!("{SESSION_DIR_PREFIX}{id}"));
    std::fs::DirBuilder::new().mode(0o700).create(&making)?;
    let lock = std::fs::File::open(&making)?;
    if !try_lock(&lock) {
        return Err(std::io::Error::other(format!(
            "cannot lock {}",
            making.display()
        )));
    }
    std::fs::rename(&making, &dir)?;
    Ok((dir, lock))
}

/// Take an exclusive `flock` without waiting; held until the file is closed.
fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Remove the session directories in `runtime` whose owner is gone (nobody holds
/// their lock). Returns how many went.
fn remove_abandoned(runtime: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(runtime) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_session = name
            .to_str()
            .is_some_and(|n| n.starts_with(SESSION_DIR_PREFIX));
        if !is_session || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let Ok(dir) = std::fs::File::open(&path) else {
            continue;
        };
        if try_lock(&dir) && std::fs::remove_dir_all(&path).is_ok() {
            tracing::info!("removed {} left by a pxkernel that is gone", path.display());
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_of_gone_processes_are_removed_and_live_ones_kept() {
        let runtime = tempfile::tempdir().unwrap();
        let (live, _held) = make_session_dir(runtime.path()).unwrap();
        std::fs::write(live.join("kernel-a.json"), "{}").unwrap();
        // A pxkernel killed outright: its directory and files remain, unlocked.
        let gone = runtime.path().join("pxk-deadbeef");
        std::fs::create_dir(&gone).unwrap();
        std::fs::write(gone.join("kernel-b.json"), "{}").unwrap();
        std::fs::write(gone.join("b-1"), "").unwrap();
        // Not ours: kept whatever its name.
        let theirs = runtime.path().join("kernel-123.json");
        std::fs::write(&theirs, "{}").unwrap();

        assert_eq!(remove_abandoned(runtime.path()), 1);
        assert!(!gone.exists());
        assert!(live.join("kernel-a.json").is_file());
        assert!(theirs.is_file());

        // A second process's start removes nothing that lives.
        let (other, _other_lock) = make_session_dir(runtime.path()).unwrap();
        assert!(live.is_dir() && other.is_dir() && other != live);
        drop(_held);
        assert_eq!(remove_abandoned(runtime.path()), 1);
        assert!(!live.exists() && other.is_dir());
    }
}
