//! `wasmsock new`'s project templates, embedded in the binary: a ready handler project (echo source, build file,
//! `.websocket` descriptor, README) in Rust, JavaScript or Python. A project gets copies of `wit/` and of its
//! language's SDK, so it builds outside this repository with registry packages only.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// Which language a new handler is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust over wit-bindgen (`cargo build --release --target wasm32-unknown-unknown`: a module the host makes a
    /// component of).
    Rust,
    /// JavaScript on QuickJS through componentize-qjs, or on SpiderMonkey through componentize-js (`npm install && npm
    /// run build`).
    Js,
    /// Python through componentize-py.
    Python,
}

/// The WIT contract every project builds against.
const WIT: &str = include_str!("../../../../wit/websockets.wit");
/// The WASI packages the contract's worlds import: (directory under `wit/deps`, file, contents).
const WIT_DEPS: [(&str, &str, &str); 5] = [
    ("keyvalue", "keyvalue.wit", include_str!("../../../../wit/deps/keyvalue/keyvalue.wit")),
    ("config", "config.wit", include_str!("../../../../wit/deps/config/config.wit")),
    ("http", "http.wit", include_str!("../../../../wit/deps/http/http.wit")),
    ("io", "io.wit", include_str!("../../../../wit/deps/io/io.wit")),
    ("clocks", "clocks.wit", include_str!("../../../../wit/deps/clocks/clocks.wit")),
];

const README: &str = include_str!("README.md.tmpl");

const RUST_CARGO: &str = include_str!("Cargo.toml.tmpl");
const RUST_SDK_CARGO: &str = include_str!("sdk-Cargo.toml.tmpl");
const RUST_SDK: &str = include_str!("../../../../sdk/rust/src/lib.rs");
/// The Rust SDK's other modules, copied as they are.
const RUST_SDK_MODULES: [(&str, &str); 6] = [
    ("http.rs", include_str!("../../../../sdk/rust/src/http.rs")),
    ("history.rs", include_str!("../../../../sdk/rust/src/history.rs")),
    ("kv.rs", include_str!("../../../../sdk/rust/src/kv.rs")),
    ("lean.rs", include_str!("../../../../sdk/rust/src/lean.rs")),
    ("variables.rs", include_str!("../../../../sdk/rust/src/variables.rs")),
    ("timers.rs", include_str!("../../../../sdk/rust/src/timers.rs")),
];
const RUST_HANDLER: &str = include_str!("../../../../plugins/examples/echo/src/lib.rs");
/// The wit-bindgen the SDK is built with here (the workspace's `wit-bindgen` requirement).
const WIT_BINDGEN: &str = "0.61";
/// The `wasip2` crate the Rust SDK's HTTP helper uses, as the workspace pins it.
const WASIP2: &str = "1.0.4";

const JS_PACKAGE: &str = include_str!("package.json.tmpl");
const JS_SDK_PACKAGE: &str = include_str!("../../../../sdk/js/package.json");
const JS_BUILD: &str = include_str!("../../../../sdk/js/build.mjs");
const JS_SDK: &str = include_str!("../../../../sdk/js/index.js");
const JS_SDK_TYPES: &str = include_str!("../../../../sdk/js/index.d.ts");
const JS_QUICKJS_GLOBALS: &str = include_str!("../../../../sdk/js/quickjs-globals.js");
/// The JavaScript SDK's other modules, copied as they are.
const JS_SDK_MODULES: [(&str, &str); 7] = [
    ("kv.js", include_str!("../../../../sdk/js/kv.js")),
    ("fetch.js", include_str!("../../../../sdk/js/fetch.js")),
    ("http.js", include_str!("../../../../sdk/js/http.js")),
    ("timeouts.js", include_str!("../../../../sdk/js/timeouts.js")),
    ("variables.js", include_str!("../../../../sdk/js/variables.js")),
    ("timers.js", include_str!("../../../../sdk/js/timers.js")),
    ("wit-values.js", include_str!("../../../../sdk/js/wit-values.js")),
];
const JS_HANDLER: &str = include_str!("../../../../plugins/examples/js-echo/handler.js");

const PY_BUILD: &str = include_str!("../../../../sdk/python/build.py");
const PY_SDK_INIT: &str = include_str!("../../../../sdk/python/wasmsock/__init__.py");
const PY_SDK: &str = include_str!("../../../../sdk/python/wasmsock/websockets.py");
/// The Python SDK's other modules, copied as they are.
const PY_SDK_MODULES: [(&str, &str); 4] = [
    ("http.py", include_str!("../../../../sdk/python/wasmsock/http.py")),
    ("kv.py", include_str!("../../../../sdk/python/wasmsock/kv.py")),
    ("timers.py", include_str!("../../../../sdk/python/wasmsock/timers.py")),
    ("variables.py", include_str!("../../../../sdk/python/wasmsock/variables.py")),
];
const PY_SDK_NET_INIT: &str = include_str!("../../../../sdk/python/sdk/__init__.py");
const PY_SDK_NET: &str = include_str!("../../../../sdk/python/sdk/net.py");
const PY_HANDLER: &str = include_str!("../../../../plugins/examples/py-echo/app.py");
/// The componentize-py the Python SDK's build pins.
const COMPONENTIZE_PY: &str = "0.25.1";

const GITIGNORE: &str = "/target\n/node_modules\n/.venv\n__pycache__/\n*.wasm\n";

/// The files of a new project named `name` (also its handler's project segment) serving `endpoint`, as relative
/// paths and contents.
pub fn files(name: &str, lang: Lang, endpoint: &str) -> anyhow::Result<Vec<(PathBuf, String)>> {
    check_name(name)?;
    wasmsock_wire::descriptor::check_endpoint_name(endpoint)?;
    let descriptor = serde_json::to_string_pretty(&serde_json::json!({
        "handler": format!("{name}/handler"),
        "endpoint": endpoint,
        "description": format!("{name}: a {} handler made with wasmsock new", lang_name(lang)),
        // Where create-websocket destinations are granted to the project: none until you add some, such as
        // "wss://api.example.com" or "ws://127.0.0.1:*" (see the README's Security section).
        "allowed-outbound-hosts": [],
    }))?;
    let mut files = vec![
        (PathBuf::from(format!("{name}.websocket")), format!("{descriptor}\n")),
        (PathBuf::from("wit/websockets.wit"), WIT.to_owned()),
        (PathBuf::from(".gitignore"), GITIGNORE.to_owned()),
    ];
    for (dir, file, contents) in WIT_DEPS {
        files.push((Path::new("wit/deps").join(dir).join(file), contents.to_owned()));
    }
    let (source, needs, build, imports) = match lang {
        Lang::Rust => {
            let artifact = name.replace('-', "_");
            files.push(("Cargo.toml".into(), RUST_CARGO.replace("{{name}}", name)));
            files.push(("src/lib.rs".into(), RUST_HANDLER.to_owned()));
            files.push((
                "wasmsock-sdk/Cargo.toml".into(),
                RUST_SDK_CARGO.replace("{{wit_bindgen}}", WIT_BINDGEN).replace("{{wasip2}}", WASIP2),
            ));
            // The SDK's bindings point at the repository's wit/; here it is the project's.
            files.push(("wasmsock-sdk/src/lib.rs".into(), RUST_SDK.replace("\"../../wit\"", "\"../wit\"")));
            for (module, text) in RUST_SDK_MODULES {
                files.push((Path::new("wasmsock-sdk/src").join(module), text.to_owned()));
            }
            (
                "src/lib.rs",
                "It needs Rust with the `wasm32-unknown-unknown` target (`rustup target add wasm32-unknown-unknown`). \
                 The build is a module without WASI, which the host makes a component when it loads it and which \
                 costs less per event than a `wasm32-wasip2` build (`wasmsock-sdk/src/lean.rs` says why; built for \
                 `wasm32-wasip2` instead, the same code is a component already)."
                    .to_owned(),
                format!(
                    "cargo build --release --target wasm32-unknown-unknown && cp \
                     ${{CARGO_TARGET_DIR:-target}}/wasm32-unknown-unknown/release/{artifact}.wasm handler.wasm"
                ),
                "The handler uses the SDK in `wasmsock-sdk/`: `use wasmsock_sdk::websockets;`.",
            )
        }
        Lang::Js => {
            let sdk: serde_json::Value =
                serde_json::from_str(JS_SDK_PACKAGE).context("reading the JavaScript SDK's package.json")?;
            let dependencies = serde_json::to_string_pretty(&sdk["dependencies"])?.replace('\n', "\n  ");
            files.push((
                "package.json".into(),
                JS_PACKAGE.replace("{{name}}", name).replace("{{dependencies}}", &dependencies),
            ));
            files.push(("handler.js".into(), JS_HANDLER.to_owned()));
            files.push(("sdk/build.mjs".into(), JS_BUILD.to_owned()));
            files.push(("sdk/index.js".into(), JS_SDK.to_owned()));
            files.push(("sdk/index.d.ts".into(), JS_SDK_TYPES.to_owned()));
            files.push(("sdk/quickjs-globals.js".into(), JS_QUICKJS_GLOBALS.to_owned()));
            for (module, text) in JS_SDK_MODULES {
                files.push((Path::new("sdk").join(module), text.to_owned()));
            }
            (
                "handler.js",
                "It needs Node.js 20 or later with npm; `npm install` fetches esbuild and the two engines' builders, \
                 componentize-qjs (QuickJS, the default) and componentize-js (SpiderMonkey: add `-- --engine \
                 spidermonkey` to the build command)."
                    .to_owned(),
                "npm install && npm run build".to_owned(),
                "The handler imports the SDK (`sdk/index.js`) as `import { websockets } from \"wasmsock\";`. A handler \
                 written for Eclipse Dirigible keeps its own import, `import { websockets } from \"sdk/net\";`: the \
                 build resolves both to the same SDK.",
            )
        }
        Lang::Python => {
            files.push(("app.py".into(), PY_HANDLER.to_owned()));
            files.push(("requirements.txt".into(), format!("componentize-py=={COMPONENTIZE_PY}\n")));
            files.push(("sdk/build.py".into(), PY_BUILD.to_owned()));
            files.push(("sdk/wasmsock/__init__.py".into(), PY_SDK_INIT.to_owned()));
            files.push(("sdk/wasmsock/websockets.py".into(), PY_SDK.to_owned()));
            for (module, text) in PY_SDK_MODULES {
                files.push((Path::new("sdk/wasmsock").join(module), text.to_owned()));
            }
            files.push(("sdk/sdk/__init__.py".into(), PY_SDK_NET_INIT.to_owned()));
            files.push(("sdk/sdk/net.py".into(), PY_SDK_NET.to_owned()));
            (
                "app.py",
                format!(
                    "It needs Python 3.11 or later; the first command makes a virtual environment with \
                     componentize-py {COMPONENTIZE_PY} (from `requirements.txt`)."
                ),
                "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt && \
                 .venv/bin/python sdk/build.py app.py -o handler.wasm --wit wit"
                    .to_owned(),
                "The handler imports the SDK (`sdk/wasmsock/`) as `from wasmsock import websockets`. A handler written \
                 for Eclipse Dirigible keeps its own import, `from sdk.net import websockets` (`sdk/sdk/net.py`): both \
                 are the same SDK.",
            )
        }
    };
    let readme = README
        .replace("{{name}}", name)
        .replace("{{language}}", lang_name(lang))
        .replace("{{source}}", source)
        .replace("{{needs}}", &needs)
        .replace("{{build}}", &build)
        .replace("{{imports}}", imports)
        .replace("{{endpoint}}", endpoint);
    files.push(("README.md".into(), readme));
    Ok(files)
}

/// The README's build command of a project (what `wasmsock new` prints as the next step).
pub fn build_command(lang: Lang, name: &str) -> anyhow::Result<String> {
    let files = files(name, lang, "x")?;
    let readme = files.iter().find(|(path, _)| path == Path::new("README.md")).map(|(_, text)| text.as_str());
    let readme = readme.context("a project has a README")?;
    let block = readme.split("## Build").nth(1).unwrap_or_default();
    let command = block.lines().find_map(|line| line.strip_prefix("    ")).context("the README shows its build")?;
    Ok(command.to_owned())
}

/// Writes a new project into `dir`, which must not exist or be empty.
pub fn write(dir: &Path, name: &str, lang: Lang, endpoint: &str) -> anyhow::Result<()> {
    let files = files(name, lang, endpoint)?;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() {
            bail!("{} already exists and is not empty", dir.display());
        }
    }
    for (rel, contents) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A project name: lower-case letters, digits, `-` and `_`, starting with a letter (a valid crate, npm package and
/// handler project name at once).
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
    if !valid {
        bail!("project name {name:?}: use up to 64 lower-case letters, digits, `-` and `_`, starting with a letter");
    }
    Ok(())
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Js => "JavaScript",
        Lang::Python => "Python",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_project_has_a_descriptor_wit_and_a_readme_with_its_build() {
        for lang in [Lang::Rust, Lang::Js, Lang::Python] {
            let files = files("my-chat", lang, "chat").unwrap();
            let get = |p: &str| files.iter().find(|(path, _)| path == Path::new(p)).map(|(_, t)| t.clone()).unwrap();
            let descriptor = wasmsock_wire::descriptor::Descriptor::parse(&get("my-chat.websocket")).unwrap();
            assert_eq!((descriptor.handler.as_str(), descriptor.endpoint.as_str()), ("my-chat/handler", "chat"));
            assert!(get("wit/websockets.wit").contains("world handler"));
            let readme = get("README.md");
            assert!(readme.contains(&build_command(lang, "my-chat").unwrap()), "{readme}");
            assert!(readme.contains("wasmsock deploy ."), "{readme}");
            assert!(!readme.contains("{{"), "{readme}");
        }
        let rust = files("my-chat", Lang::Rust, "chat").unwrap();
        let sdk = &rust.iter().find(|(p, _)| p == Path::new("wasmsock-sdk/src/lib.rs")).unwrap().1;
        assert!(sdk.contains("path: \"../wit\"") && !sdk.contains("../../wit"));
        assert!(build_command(Lang::Rust, "my-chat").unwrap().contains("release/my_chat.wasm handler.wasm"));
        let js = files("my-chat", Lang::Js, "chat").unwrap();
        let package: serde_json::Value =
            serde_json::from_str(&js.iter().find(|(p, _)| p == Path::new("package.json")).unwrap().1).unwrap();
        assert_eq!(package["dependencies"]["@bytecodealliance/componentize-js"], "0.23.0");
    }

    #[test]
    fn every_file_of_each_sdk_and_of_wit_is_in_its_projects() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let listed = |dir: &str, ext: &str| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(repo.join(dir))
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(ext))
                .collect();
            names.sort();
            names
        };
        let cases = [
            (Lang::Rust, "sdk/rust/src", ".rs", "wasmsock-sdk/src"),
            (Lang::Js, "sdk/js", ".js", "sdk"),
            (Lang::Python, "sdk/python/wasmsock", ".py", "sdk/wasmsock"),
        ];
        for (lang, dir, ext, into) in cases {
            let files = files("p", lang, "e").unwrap();
            for name in listed(dir, ext) {
                let path = Path::new(into).join(&name);
                assert!(files.iter().any(|(p, _)| *p == path), "{dir}/{name} is not in a new {lang:?} project");
            }
            let deps: Vec<String> = std::fs::read_dir(repo.join("wit/deps"))
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(deps.len() >= 5, "{deps:?}");
            for dep in deps {
                let dir = format!("wit/deps/{dep}");
                for name in listed(&dir, ".wit") {
                    let path = Path::new(&dir).join(&name);
                    assert!(files.iter().any(|(p, _)| *p == path), "{dir}/{name} is not in a new {lang:?} project");
                }
            }
        }
    }

    #[test]
    fn script_projects_show_and_ship_the_dirigible_import_beside_their_own() {
        let get = |lang, p: &str| {
            let files = files("seed", lang, "e").unwrap();
            files.iter().find(|(path, _)| path == Path::new(p)).map(|(_, t)| t.clone())
        };
        let readme = get(Lang::Js, "README.md").unwrap();
        assert!(readme.contains(r#"from "wasmsock""#) && readme.contains(r#"from "sdk/net""#), "{readme}");
        assert!(get(Lang::Js, "sdk/build.mjs").unwrap().contains(r#""sdk/net": join(sdkDir, "index.js")"#));
        let readme = get(Lang::Python, "README.md").unwrap();
        assert!(readme.contains("from wasmsock import") && readme.contains("from sdk.net import"), "{readme}");
        // build.py puts `sdk/` on the path: `sdk/sdk/net.py` is the module `sdk.net`, re-exporting `wasmsock`'s API.
        assert!(get(Lang::Python, "sdk/sdk/__init__.py").is_some());
        assert!(get(Lang::Python, "sdk/sdk/net.py").unwrap().contains("from wasmsock import"));
        assert!(get(Lang::Python, "sdk/build.py").unwrap().contains(r#""-p", str(SDK_DIR)"#));
    }

    #[test]
    fn pinned_versions_match_the_repository() {
        let workspace = include_str!("../../../../Cargo.toml");
        assert!(workspace.contains(&format!("wit-bindgen = \"{WIT_BINDGEN}\"")), "update WIT_BINDGEN");
        assert!(workspace.contains(&format!("wasip2 = \"{WASIP2}\"")), "update WASIP2");
        assert!(PY_BUILD.contains(&format!("COMPONENTIZE_PY = \"{COMPONENTIZE_PY}\"")), "update COMPONENTIZE_PY");
    }

    #[test]
    fn names_must_suit_every_language() {
        assert!(files("Bad", Lang::Rust, "e").is_err());
        assert!(files("9lives", Lang::Js, "e").is_err());
        assert!(files("ok-name_2", Lang::Python, "e").is_ok());
        assert!(files("ok", Lang::Python, "bad/endpoint").is_err());
    }
}
