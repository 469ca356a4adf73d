//! The fake kernels' heartbeat port: a TCP byte relay, run on the kernel's own
//! thread, in front of the server's echo (which has a thread of its own and so
//! would answer while the kernel is frozen). Every ping is still echoed by the
//! server's echo, byte for byte; freezing the kernel's thread stops the relay,
//! killing it closes the relay's listener and connections.

use std::io;

use tokio::net::{TcpListener, TcpStream};

/// The listener of the advertised heartbeat port, bound before the kernel's
/// runtime takes it.
pub(crate) struct Relay {
    listener: std::net::TcpListener,
}

impl Relay {
    /// Bind a free port on 127.0.0.1.
    pub(crate) fn bind() -> io::Result<Relay> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        Ok(Relay { listener })
    }

    /// The advertised heartbeat port.
    pub(crate) fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Relay every connection to the echo on `127.0.0.1:echo_port`, each one a
    /// local task of the kernel's `LocalSet`. A connection the echo refuses (the
    /// server has stopped) is closed.
    pub(crate) async fn serve(self, echo_port: u16) {
        let listener = match TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => panic!("heartbeat relay: {e}"),
        };
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::task::spawn_local(async move {
                if let Ok(mut echo) = TcpStream::connect(("127.0.0.1", echo_port)).await {
                    // Pings are small: never let Nagle hold one back.
                    let _ = inbound.set_nodelay(true);
                    let _ = echo.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut echo).await;
                }
            });
        }
    }
}
