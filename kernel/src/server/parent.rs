//! Watching the process that started the kernel: a kernel whose frontend died
//! without a shutdown_request must stop its children and exit.
//!
//! The watch is set up once: a pidfd of the parent (Linux ≥ 5.3) becomes
//! readable when the parent exits, so nothing wakes until then. Where pidfds are
//! not available, the parent is polled each second against the pid read once at
//! the start (re-parenting changes `getppid`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// What the kernel watches: the parent it had when the watch was made.
#[derive(Debug)]
pub struct ParentWatch {
    parent: libc::pid_t,
    pidfd: Option<AsyncFd<PidFd>>,
}

#[derive(Debug)]
struct PidFd(OwnedFd);

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

fn current_parent() -> libc::pid_t {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() }
}

fn open_pidfd(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new descriptor that we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh descriptor from pidfd_open, owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn watch_readable(fd: OwnedFd) -> std::io::Result<AsyncFd<PidFd>> {
    // SAFETY: the descriptor is owned by the PidFd, which the AsyncFd owns: it
    // stays open for as long as it is registered.
    unsafe { AsyncFd::register_with_interest(PidFd(fd), Interest::READABLE) }
        .map_err(std::io::Error::from)
}

impl ParentWatch {
    /// Watch the current parent. Must be called inside a tokio runtime.
    pub fn new() -> ParentWatch {
        let parent = current_parent();
        let pidfd = open_pidfd(parent).and_then(|fd| {
            watch_readable(fd)
                .map_err(|e| tracing::debug!("cannot watch the parent's pidfd: {e}"))
                .ok()
        });
        if pidfd.is_none() {
            tracing::debug!(parent, "no pidfd for the parent; polling it");
        }
        ParentWatch { parent, pidfd }
    }

    /// Resolves once the parent has exited (at once if it already has).
    pub async fn exited(&self) {
        // The parent may have gone before the pidfd was opened (the pid then names
        // another process, or none): re-parenting has changed getppid already.
        if current_parent() != self.parent {
            return;
        }
        match &self.pidfd {
            Some(fd) => {
                if let Ok(mut guard) = fd.readable().await {
                    guard.retain_ready();
                }
            }
            None => loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if current_parent() != self.parent {
                    return;
                }
            },
        }
    }
}

impl Default for ParentWatch {
    fn default() -> Self {
        ParentWatch::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_becomes_readable_when_its_process_exits() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut child = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap();
            let fd = open_pidfd(child.id() as libc::pid_t).expect("pidfd_open");
            let watch = ParentWatch {
                parent: current_parent(),
                pidfd: Some(watch_readable(fd).unwrap()),
            };
            let early = tokio::time::timeout(Duration::from_millis(200), watch.exited()).await;
            assert!(early.is_err(), "resolved while the process lives");
            child.kill().unwrap();
            child.wait().unwrap();
            tokio::time::timeout(Duration::from_secs(10), watch.exited())
                .await
                .expect("resolves once the process has exited");
        });
    }
}
