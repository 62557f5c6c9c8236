//! Telling a service manager how `wasmsock serve` is doing: systemd's readiness protocol (`Type=notify`), a datagram
//! of `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET` (a path, or an abstract name after `@`). Without the
//! variable nothing is sent; a failure to send is logged, never fatal.

use std::path::Path;

/// Sends `state` (for example `READY=1`) to the service manager, if one asked for it.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(err) = send(Path::new(&socket), state) {
        tracing::warn!("cannot tell the service manager {state:?} through NOTIFY_SOCKET={}: {err}", socket.display());
    }
}

#[cfg(target_os = "linux")]
fn send(socket: &Path, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let name = socket.as_os_str().as_bytes();
    let addr = match name.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name)?,
        None => SocketAddr::from_pathname(socket)?,
    };
    let sender = UnixDatagram::unbound()?;
    sender.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(all(unix, not(target_os = "linux")))]
fn send(socket: &Path, state: &str) -> std::io::Result<()> {
    std::os::unix::net::UnixDatagram::unbound()?.send_to(state.as_bytes(), socket).map(|_| ())
}

#[cfg(not(unix))]
fn send(_socket: &Path, _state: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no Unix sockets here"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_state_reaches_a_socket_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send(&path, "READY=1\nSTATUS=serving").unwrap();
        let mut buffer = [0u8; 64];
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1\nSTATUS=serving");
        assert!(send(&dir.path().join("missing"), "READY=1").is_err(), "a missing socket is an error");
    }
}
