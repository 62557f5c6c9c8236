//! The host's layout, checked from its source: no import cycle between any two files of `host/src`, imports between
//! rooms point down only (`cli` > `http` > `app` > `cluster` > `history` > `channels` > `conn` > `control` > `store` > `runtime` > `fair` > the
//! `wire` crate), nothing outside `runtime/` names wasmtime, and the pure `wire` crate depends on neither tokio nor
//! wasmtime.
//!
//! An import is any `crate::…` or `super::…` path in a file (in `use` trees or inline, outside its unit tests and
//! comments), resolved to the file of the deepest module it names; `mod x;` declarations are not imports. Run with
//! `cargo test -p wasmsock-tests --test layout -- --nocapture` to print every file's imports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rooms of `host/src` from the bottom up; a room may import only rooms at its own rank or below.
const ROOMS: &[&str] =
    &["budget", "fair", "runtime", "store", "control", "conn", "channels", "history", "cluster", "app", "http", "cli"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every `.rs` file under `dir`, with its module path (`runtime/engine.rs` → `["runtime", "engine"]`).
fn modules(dir: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap();
            let mut segments: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            let last = segments.pop().unwrap();
            let stem = last.trim_end_matches(".rs");
            if !matches!(stem, "mod" | "lib" | "main") {
                segments.push(stem.to_owned());
            }
            if stem == "main" {
                continue; // The binary is its own crate.
            }
            found.insert(segments, path);
        }
    }
    found
}

/// The file's code without comments and without its `#[cfg(test)]` unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or_default().to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|part| !part.is_empty())
        .flat_map(|part| expand(part).into_iter().map(|rest| format!("{prefix}{rest}")))
        .collect()
}

/// Every `crate::`/`super::` path in `code`, made absolute (segments after `crate`) for a file at module `me`.
fn paths(code: &str, me: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = code;
    let mut trees = Vec::new();
    while let Some(at) = rest.find("use ") {
        let after = &rest[at + 4..];
        let Some(end) = after.find(';') else { break };
        let boundary = at == 0 || !rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        if boundary && (after.starts_with("crate::") || after.starts_with("super::")) {
            trees.extend(expand(&after[..end]));
        } else if boundary
            && let Some(first) = after.split("::").next()
            && children.contains(first)
        {
            // `use child::Item` in a module file: a path relative to this module.
            trees.extend(expand(&after[..end]).into_iter().map(|path| format!("self::{path}")));
        }
        rest = &after[end..];
    }
    let inline = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| (token.starts_with("crate::") || token.starts_with("super::")) && !token.ends_with("::"));
    trees.extend(inline.map(str::to_owned));
    for path in trees {
        let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        // `super` is the parent of the file's module (for a mod.rs, of its folder's module).
        let mut base: Vec<String> = me.to_vec();
        if segments.first() == Some(&"crate") {
            base.clear();
            segments.remove(0);
        } else if segments.first() == Some(&"self") {
            segments.remove(0);
        } else {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
        }
        base.extend(segments.iter().map(|s| (*s).to_owned()));
        found.push(base);
    }
    found
}

/// The file-level import graph of `host/src`: each module's imports, resolved to modules that have a file.
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = workspace().join("host/src");
    let files = modules(&src);
    let mut graph = BTreeMap::new();
    for (module, path) in &files {
        let mut imports = BTreeSet::new();
        let children: BTreeSet<String> = files
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .filter_map(|m| m.last().cloned())
            .collect();
        for target in paths(&code(path), module, &children) {
            let resolved =
                (0..=target.len()).rev().map(|n| target[..n].to_vec()).find(|prefix| files.contains_key(prefix));
            if let Some(resolved) = resolved
                && &resolved != module
                && !resolved.is_empty()
            {
                imports.insert(resolved);
            }
        }
        graph.insert(module.clone(), imports);
    }
    graph
}

fn name(module: &[String]) -> String {
    if module.is_empty() { "lib".to_owned() } else { module.join("::") }
}

#[test]
fn no_import_cycle_between_files_of_the_host() {
    let graph = graph();
    for (module, imports) in &graph {
        let list: Vec<String> = imports.iter().map(|m| name(m)).collect();
        eprintln!("{:<24} -> {}", name(module), list.join(", "));
    }
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let from = stack.iter().position(|m| m == next).unwrap();
                    let mut cycle: Vec<String> = stack[from..].iter().map(|m| name(m)).collect();
                    cycle.push(name(next));
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            let cycle = visit(node, &graph, &mut state, &mut Vec::new());
            assert!(cycle.is_none(), "import cycle: {}", cycle.unwrap_or_default().join(" -> "));
        }
    }
    assert!(graph.len() > 20, "the host's files were not found: {graph:?}");
}

#[test]
fn rooms_import_only_rooms_below_them() {
    let rank = |module: &[String]| module.first().and_then(|room| ROOMS.iter().position(|r| r == room));
    let mut wrong = Vec::new();
    for (module, imports) in graph() {
        let Some(mine) = rank(&module) else { continue };
        for target in imports {
            if rank(&target).is_some_and(|theirs| theirs > mine) {
                wrong.push(format!("{} imports {}", name(&module), name(&target)));
            }
        }
    }
    assert!(wrong.is_empty(), "imports that point up: {wrong:#?}");
    // Every top-level module is a room (or lib.rs itself): a new one must take its place in ROOMS.
    let src = workspace().join("host/src");
    let tops: BTreeSet<String> = modules(&src).keys().filter_map(|m| m.first().cloned()).collect();
    let unknown: Vec<&String> = tops.iter().filter(|top| !ROOMS.contains(&top.as_str())).collect();
    assert!(unknown.is_empty(), "modules of host/src that are in no room: {unknown:?}");
}

#[test]
fn only_the_runtime_names_wasmtime_and_the_wire_crate_is_pure() {
    let src = workspace().join("host/src");
    let mut leaks = Vec::new();
    for (module, path) in modules(&src) {
        if module.first().is_some_and(|room| room == "runtime") {
            continue;
        }
        if code(&path).contains("wasmtime") {
            leaks.push(path.display().to_string());
        }
    }
    assert!(leaks.is_empty(), "files outside host/src/runtime that name wasmtime: {leaks:?}");
    let manifest = std::fs::read_to_string(workspace().join("wire/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or_default();
    for banned in ["tokio", "wasmtime", "axum"] {
        assert!(!deps.contains(banned), "wire/Cargo.toml depends on {banned}:\n{deps}");
    }
    for (_, path) in modules(&workspace().join("wire/src")) {
        let code = code(&path);
        assert!(!code.contains("tokio") && !code.contains("wasmtime"), "{} names tokio or wasmtime", path.display());
    }
}
