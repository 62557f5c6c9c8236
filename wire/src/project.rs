//! A project's manifest, `<plugins root>/<project>/project.json`: what the operator grants one project beyond the
//! host's defaults (today its quotas). Parsed here, applied by the host.

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::limits::QuotaOverrides;

/// The file name of a project's manifest, in the project's directory under the plugins root.
pub const MANIFEST_FILE: &str = "project.json";

/// The largest manifest read, in bytes.
const MAX_MANIFEST_BYTES: u64 = 64 << 10;

/// A project's manifest: `{"quotas": {"calls": 16, "resident-instances": 8, "clients": 100, "connections": 1000}}`.
/// Every field is optional; an unknown one is an error that names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// The project's own quotas; what is absent is the host's (`serve --project-*`).
    #[serde(default)]
    pub quotas: QuotaOverrides,
}

impl Manifest {
    /// Parses a manifest; the error names the field at fault.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            bail!("{} bytes is too large for a project manifest (at most {MAX_MANIFEST_BYTES})", text.len());
        }
        let manifest: Manifest = serde_json::from_str(text).context("not a valid project manifest")?;
        manifest.quotas.check()?;
        Ok(manifest)
    }

    /// Reads and parses a manifest file; errors name the file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let len = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?.len();
        if len > MAX_MANIFEST_BYTES {
            bail!("{}: {len} bytes is too large for a project manifest (at most {MAX_MANIFEST_BYTES})", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::parse(&text).with_context(|| path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::limits::ProjectQuotas;

    #[test]
    fn quotas_override_the_host_field_by_field() {
        let manifest = Manifest::parse(r#"{"quotas": {"calls": 4, "connections": 10}}"#).unwrap();
        let host = ProjectQuotas::default();
        let quotas = manifest.quotas.over(host);
        assert_eq!((quotas.calls, quotas.connections), (4, 10));
        assert_eq!((quotas.resident_instances, quotas.clients), (host.resident_instances, host.clients));
        assert_eq!(Manifest::parse("{}").unwrap(), Manifest::default());
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let unknown = format!("{:#}", Manifest::parse(r#"{"quotas": {"cpu": 1}}"#).unwrap_err());
        assert!(unknown.contains("unknown field `cpu`"), "{unknown}");
        let zero = format!("{:#}", Manifest::parse(r#"{"quotas": {"clients": 0}}"#).unwrap_err());
        assert!(zero.contains("quotas.clients"), "{zero}");
        let top = format!("{:#}", Manifest::parse(r#"{"grants": []}"#).unwrap_err());
        assert!(top.contains("unknown field `grants`"), "{top}");
    }
}
