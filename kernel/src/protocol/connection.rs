//! Connection files: the JSON a kernel is started with (transport, ip, five ports,
//! signature scheme and key, and CurveZMQ keys when the launcher provisions them).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Channel, ProtocolError};

/// The content of a kernel connection file.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectionInfo {
    /// `tcp` or `ipc`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// The address the kernel binds.
    #[serde(default = "default_ip")]
    pub ip: String,
    /// Shell port.
    pub shell_port: u16,
    /// IOPub port.
    pub iopub_port: u16,
    /// Stdin port.
    pub stdin_port: u16,
    /// Control port.
    pub control_port: u16,
    /// Heartbeat port.
    pub hb_port: u16,
    /// `hmac-sha256` (the only scheme supported; with an empty key nothing is signed).
    #[serde(default = "default_scheme")]
    pub signature_scheme: String,
    /// The HMAC key; empty means unsigned.
    #[serde(default)]
    pub key: String,
    /// The kernel name, written by some launchers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_name: Option<String>,
    /// CurveZMQ: the kernel's public key (Z85), which clients connect with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve_publickey: Option<String>,
    /// CurveZMQ: the kernel's secret key (Z85). A kernel given one serves CURVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curve_secretkey: Option<String>,
}

// The key is a secret: never print it.
impl std::fmt::Debug for ConnectionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionInfo")
            .field("transport", &self.transport)
            .field("ip", &self.ip)
            .field("shell_port", &self.shell_port)
            .field("iopub_port", &self.iopub_port)
            .field("stdin_port", &self.stdin_port)
            .field("control_port", &self.control_port)
            .field("hb_port", &self.hb_port)
            .field("signature_scheme", &self.signature_scheme)
            .field("key", &"<hidden>")
            .field("curve_publickey", &self.curve_publickey)
            .field(
                "curve_secretkey",
                &self.curve_secretkey.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

fn default_transport() -> String {
    "tcp".to_owned()
}
fn default_ip() -> String {
    "127.0.0.1".to_owned()
}
fn default_scheme() -> String {
    "hmac-sha256".to_owned()
}

impl ConnectionInfo {
    /// Read and parse a connection file.
    pub fn from_file(path: &Path) -> Result<Self, ProtocolError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProtocolError::ConnectionFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| ProtocolError::ConnectionFile {
            path: path.display().to_string(),
            // serde's message names the field, never the key's value.
            reason: e.to_string(),
        })
    }

    /// The ZeroMQ endpoint of one channel, e.g. `tcp://127.0.0.1:5555`.
    pub fn endpoint(&self, channel: Channel) -> String {
        let port = match channel {
            Channel::Shell => self.shell_port,
            Channel::Control => self.control_port,
            Channel::Iopub => self.iopub_port,
            Channel::Stdin => self.stdin_port,
            Channel::Heartbeat => self.hb_port,
        };
        if self.transport == "ipc" {
            format!("ipc://{}-{}", self.ip, port)
        } else if self.ip.contains(':') {
            format!("{}://[{}]:{}", self.transport, self.ip, port)
        } else {
            format!("{}://{}:{}", self.transport, self.ip, port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"shell_port": 1, "iopub_port": 2, "stdin_port": 3,
        "control_port": 4, "hb_port": 5, "ip": "127.0.0.1", "key": "s3cret",
        "transport": "tcp", "signature_scheme": "hmac-sha256", "kernel_name": ""}"#;

    #[test]
    fn parses_and_builds_endpoints() {
        let c: ConnectionInfo = serde_json::from_str(FILE).unwrap();
        assert_eq!(c.endpoint(Channel::Heartbeat), "tcp://127.0.0.1:5");
        assert_eq!(c.endpoint(Channel::Control), "tcp://127.0.0.1:4");
    }

    #[test]
    fn debug_hides_the_key() {
        let mut c: ConnectionInfo = serde_json::from_str(FILE).unwrap();
        c.curve_secretkey = Some("curve-s3cret".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn curve_keys_are_written_only_when_there_are_some() {
        let mut c: ConnectionInfo = serde_json::from_str(FILE).unwrap();
        assert!(!serde_json::to_string(&c).unwrap().contains("curve"));
        c.curve_publickey = Some("pub".into());
        c.curve_secretkey = Some("sec".into());
        let back: ConnectionInfo =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn ipc_endpoint() {
        let mut c: ConnectionInfo = serde_json::from_str(FILE).unwrap();
        c.transport = "ipc".into();
        c.ip = "/tmp/k".into();
        assert_eq!(c.endpoint(Channel::Shell), "ipc:///tmp/k-1");
    }
}
