//! `wasmsock new NAME --lang rust|js|python`: write a ready handler project (see `templates/`).

use std::path::PathBuf;

use clap::Args;

use super::templates::{self, Lang};

/// Arguments of `wasmsock new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The project name: its directory, and the handler `NAME/handler` it builds (lower-case letters, digits, `-`, `_`).
    pub name: String,
    /// The handler's language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// The endpoint its descriptor declares (default: NAME).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Where to write the project (default: ./NAME); it must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl NewArgs {
    /// Writes the project and says how to build and deploy it.
    pub async fn run(self) -> anyhow::Result<()> {
        let dir = self.dir.clone().unwrap_or_else(|| PathBuf::from(&self.name));
        let endpoint = self.endpoint.as_deref().unwrap_or(&self.name);
        templates::write(&dir, &self.name, self.lang, endpoint)?;
        let build = templates::build_command(self.lang, &self.name)?;
        super::remote::output(&format!(
            "created {} (handler {}/handler, endpoint {endpoint})\nnext:\n  cd {}\n  {build}\n  wasmsock deploy .",
            dir.display(),
            self.name,
            dir.display()
        ));
        Ok(())
    }
}
