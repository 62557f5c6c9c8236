//! JavaScript and Python guests: finds them, installs their toolchains from the registries when missing, and builds
//! each into `<name>.wasm` beside its directory unless its inputs are unchanged since the last build.
//!
//! A directory under a guest directory with a `handler.js` is a JavaScript guest (built with `sdk/js/build.mjs`:
//! esbuild, then componentize-qjs or componentize-js, installed by `npm ci` in `sdk/js`); one with an `app.py` is a
//! Python guest (built with `sdk/python/build.py`: componentize-py, installed with pip into a virtual environment under
//! `target/`). A JavaScript guest is built on the SDK's default engine; those in [`BOTH_ENGINES`] also on the other
//! one, into `tests/components/<name>-<engine>.wasm`, so the language tests run their table on both.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::run;

/// The componentize-py release the Python SDK is built and tested with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The JavaScript engines of `sdk/js/build.mjs`, its default first.
const JS_ENGINES: [&str; 2] = ["quickjs", "spidermonkey"];

/// The JavaScript guests also built on the engines after the default one (the language tests' echo, recorder and
/// Dirigible-import cases).
const BOTH_ENGINES: [&str; 3] = ["js-echo", "js-recorder", "js-seed"];

/// The language of a script guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    JavaScript,
    Python,
}

impl Language {
    /// The entry file that marks a guest directory of this language.
    fn entry(self) -> &'static str {
        match self {
            Self::JavaScript => "handler.js",
            Self::Python => "app.py",
        }
    }

    /// The SDK directory whose files are inputs of every guest of this language.
    fn sdk(self) -> &'static str {
        match self {
            Self::JavaScript => "sdk/js",
            Self::Python => "sdk/python",
        }
    }
}

/// One guest to build.
#[derive(Debug)]
struct Guest {
    name: String,
    language: Language,
    source: PathBuf,
    output: PathBuf,
    /// The JavaScript engine, when not the build's default.
    engine: Option<&'static str>,
}

/// Finds the script guests under `dirs` (relative to `root`), sorted by name.
fn find(root: &Path, dirs: &[&str]) -> anyhow::Result<Vec<Guest>> {
    let mut guests = Vec::new();
    for dir in dirs {
        let dir = root.join(dir);
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for language in [Language::JavaScript, Language::Python] {
                if !path.join(language.entry()).is_file() {
                    continue;
                }
                if language == Language::JavaScript && BOTH_ENGINES.contains(&name.as_str()) {
                    for engine in &JS_ENGINES[1..] {
                        guests.push(Guest {
                            output: root.join("tests/components").join(format!("{name}-{engine}.wasm")),
                            name: format!("{name}-{engine}"),
                            language,
                            source: path.clone(),
                            engine: Some(engine),
                        });
                    }
                }
                guests.push(Guest {
                    output: dir.join(format!("{name}.wasm")),
                    name: name.clone(),
                    language,
                    source: path.clone(),
                    engine: None,
                });
            }
        }
    }
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(guests)
}

/// Whether `program` runs at all (`program --version`).
fn available(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|out| out.status.success())
}

/// The Python interpreter to build with: `$PYTHON`, else `python3`.
fn system_python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Makes sure `sdk/js/node_modules` matches the committed lock file: `npm ci` when it is missing or older.
fn ensure_js(root: &Path) -> anyhow::Result<()> {
    let sdk = root.join(Language::JavaScript.sdk());
    let lock = sdk.join("package-lock.json");
    let installed = sdk.join("node_modules/.package-lock.json");
    let fresh = match (modified(&lock), modified(&installed)) {
        (Some(lock), Some(installed)) => installed >= lock,
        _ => false,
    };
    let engines = ["node_modules/@bytecodealliance/componentize-js", "node_modules/componentize-qjs"];
    if !fresh || !engines.iter().all(|engine| sdk.join(engine).is_dir()) {
        eprintln!("xtask: installing the JavaScript toolchain (npm ci in sdk/js)");
        run(Command::new("npm").current_dir(&sdk).args(["ci", "--no-audit", "--no-fund"]))?;
    }
    Ok(())
}

/// Makes sure a virtual environment under `target/` (or, without `venv`, the user's site) has componentize-py at the
/// pinned version; returns the python to build with.
fn ensure_python(target: &Path) -> anyhow::Result<PathBuf> {
    let venv = target.join("python-guests");
    let mut python = venv.join("bin/python3");
    let mut user = false;
    if !python.is_file() {
        eprintln!("xtask: creating {}", venv.display());
        if let Err(err) = run(Command::new(system_python()).args(["-m", "venv"]).arg(&venv)) {
            // Some distributions ship python3 without `venv` (Debian's python3-venv); install for the user instead.
            eprintln!("xtask: warning: {err:#}; using {} itself", system_python());
            let _ = std::fs::remove_dir_all(&venv);
            python = PathBuf::from(system_python());
            user = true;
        }
    }
    let pinned = COMPONENTIZE_PY.trim_start_matches("componentize-py==");
    let version = Command::new(&python)
        .args(["-c", "from importlib.metadata import version; print(version('componentize-py'))"])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    if version.as_deref() != Some(pinned) {
        eprintln!("xtask: installing {COMPONENTIZE_PY} into {}", venv.display());
        let mut install = Command::new(&python);
        install.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]);
        if user {
            install.arg("--user");
        }
        run(install.arg(COMPONENTIZE_PY))?;
    }
    Ok(python)
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Adds every file under `dir` (sorted, skipping `node_modules`, `__pycache__` and built `.wasm`) to `hasher`.
fn hash_tree(dir: &Path, hasher: &mut DefaultHasher) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == "node_modules" || name == "__pycache__" || name.ends_with(".wasm") {
            continue;
        }
        if path.is_dir() {
            hash_tree(&path, hasher)?;
        } else {
            name.hash(hasher);
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?.hash(hasher);
        }
    }
    Ok(())
}

/// A digest of everything a guest's component depends on: its own files, its language's SDK and the WIT contract.
fn input_digest(root: &Path, guest: &Guest) -> anyhow::Result<String> {
    let mut hasher = DefaultHasher::new();
    hash_tree(&guest.source, &mut hasher)?;
    hash_tree(&root.join(guest.language.sdk()), &mut hasher)?;
    hash_tree(&root.join("wit"), &mut hasher)?;
    guest.engine.hash(&mut hasher);
    Ok(format!("{:016x}", hasher.finish()))
}

/// The command that builds one guest.
fn build_command(root: &Path, guest: &Guest, python: Option<&Path>) -> anyhow::Result<Command> {
    let entry = guest.source.join(guest.language.entry());
    let mut command = match guest.language {
        Language::JavaScript => {
            let mut command = Command::new("node");
            command.arg(root.join("sdk/js/build.mjs"));
            command
        }
        Language::Python => {
            let python = python.context("the Python toolchain is not set up")?;
            let mut command = Command::new(python);
            command.arg(root.join("sdk/python/build.py"));
            command
        }
    };
    command.arg(entry).arg("-o").arg(&guest.output);
    if let Some(engine) = guest.engine {
        command.args(["--engine", engine]);
    }
    Ok(command)
}

/// Builds every script guest under `dirs` whose inputs changed, two at a time; a language whose runtime (node,
/// python3) is missing is skipped with a warning.
pub(crate) fn build(root: &Path, target: &Path, dirs: &[&str]) -> anyhow::Result<()> {
    let mut guests = find(root, dirs)?;
    let wants = |guests: &[Guest], language| guests.iter().any(|g| g.language == language);
    if wants(&guests, Language::JavaScript) && !(available("node") && available("npm")) {
        eprintln!("xtask: warning: node/npm not found; skipping the JavaScript guests");
        guests.retain(|g| g.language != Language::JavaScript);
    }
    if wants(&guests, Language::Python) && !available(&system_python()) {
        eprintln!("xtask: warning: {} not found; skipping the Python guests", system_python());
        guests.retain(|g| g.language != Language::Python);
    }
    let stamps = target.join("script-guests");
    std::fs::create_dir_all(&stamps).with_context(|| format!("creating {}", stamps.display()))?;
    let mut stale = Vec::new();
    for guest in guests {
        let digest = input_digest(root, &guest)?;
        let stamp = stamps.join(format!("{}.digest", guest.name));
        let current = guest.output.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|text| text.trim() == digest);
        if !current {
            stale.push((guest, stamp, digest));
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    if stale.iter().any(|(g, _, _)| g.language == Language::JavaScript) {
        ensure_js(root)?;
    }
    let python =
        if stale.iter().any(|(g, _, _)| g.language == Language::Python) { Some(ensure_python(target)?) } else { None };
    let queue = Mutex::new(stale);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some((guest, stamp, digest)) = next else {
                        return;
                    };
                    if let Err(err) = build_one(root, &guest, python.as_deref(), &stamp, &digest)
                        && let Ok(mut failures) = failures.lock()
                    {
                        failures.push(format!("{}: {err:#}", guest.name));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    if !failures.is_empty() {
        bail!("building script guests failed:\n{}", failures.join("\n"));
    }
    Ok(())
}

/// Builds one guest, reports its build time and size, and records the digest of its inputs.
fn build_one(root: &Path, guest: &Guest, python: Option<&Path>, stamp: &Path, digest: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    // A failed build must not leave an old component that looks current.
    let _ = std::fs::remove_file(stamp);
    run(&mut build_command(root, guest, python)?)?;
    let size =
        std::fs::metadata(&guest.output).with_context(|| format!("{} was not written", guest.output.display()))?.len();
    eprintln!(
        "xtask: built {} ({:?}) in {:.1?}, {:.1} MB",
        guest.name,
        guest.language,
        started.elapsed(),
        size as f64 / 1e6
    );
    std::fs::write(stamp, digest).with_context(|| format!("writing {}", stamp.display()))
}
