//! The one error of the ssh crate. Messages carry OpenSSH's own words and the
//! fix when there is one; never a password or a passphrase (ssh never prints
//! them, and answers are not kept).

/// Why an ssh connection, forward or tunnel failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// ssh ended before it was connected.
    #[error("ssh to {destination} failed: {message}{}", fix.as_ref().map(|f| format!(". {f}")).unwrap_or_default())]
    Connect {
        /// The destination as given.
        destination: String,
        /// OpenSSH's last words.
        message: String,
        /// How to make it work, when a prompt could not be answered.
        fix: Option<String>,
    },
    /// ssh neither connected nor ended in time.
    #[error("ssh to {destination} did not connect within {seconds} s")]
    Timeout {
        /// The destination.
        destination: String,
        /// The bound.
        seconds: u64,
    },
    /// The ssh program could not run.
    #[error(
        "could not run {program}: {reason} (pxkernel uses the system OpenSSH client: install openssh-client)"
    )]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
    /// A forward could not be added.
    #[error("forward {forward} via {destination} failed: {message}")]
    Forward {
        /// The forward.
        forward: String,
        /// The destination.
        destination: String,
        /// OpenSSH's words.
        message: String,
    },
    /// The connection is being re-established.
    #[error(
        "the ssh connection to {destination} is reconnecting ({reason}); try again when %ssh_tunnel --list shows it up"
    )]
    NotUp {
        /// The destination.
        destination: String,
        /// Its last error.
        reason: String,
    },
    /// No tunnel by that name.
    #[error("no tunnel named {0:?} (%ssh_tunnel --list shows them)")]
    NoTunnel(String),
    /// pxkernel's own files could not be made.
    #[error("{0}")]
    Session(String),
    /// The cell was interrupted.
    #[error("interrupted")]
    Interrupted,
}

impl SshError {
    /// Whether trying again without anyone to answer a prompt cannot help.
    pub fn needs_input(&self) -> bool {
        match self {
            SshError::Connect { message, fix, .. } => {
                fix.is_some()
                    || message.contains("Permission denied")
                    || message.contains("Host key verification failed")
            }
            _ => false,
        }
    }
}
