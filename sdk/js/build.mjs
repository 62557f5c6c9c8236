#!/usr/bin/env node
//! The JavaScript handler build: bundles a handler module with this SDK (esbuild), then turns the bundle into a
//! wasmsock handler component against the repository's `wit/`, on one of two engines: QuickJS (componentize-qjs,
//! the default) or SpiderMonkey (componentize-js).
//!
//! Run with `node sdk/js/build.mjs handler.js -o handler.wasm` (or `npm run build -- handler.js -o handler.wasm` in
//! `sdk/js`). Options: `--engine quickjs|spidermonkey`, `--wit DIR` (default: the `wit/` beside this SDK),
//! `--bundle FILE` (keep the bundled module there, for reading). The handler must `export function onEvent()`; it
//! may `import { websockets, kv, variables } from "wasmsock"` or, as a Dirigible handler does, `from "sdk/net"` (both
//! are this SDK); `@spinframework/spin-kv` and `@spinframework/spin-variables` are its `kv` and `variables`.

import { existsSync } from "node:fs";
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const sdkDir = dirname(fileURLToPath(import.meta.url));

/**
 * WASI features of SpiderMonkey that handlers do not use: `http` (its `fetch` never settles within a synchronous
 * event: `fetch.js` replaces it) and `fetch-event` (serving HTTP); stdio stays, so errors reach the log.
 */
const DISABLED_FEATURES = ["http", "fetch-event"];

const USAGE = "usage: build.mjs HANDLER.js -o OUT.wasm [--engine quickjs|spidermonkey] [--wit DIR] [--bundle FILE]";

/** The WASI release whose stdout and stderr the QuickJS prelude imports (the one componentize-qjs 0.4.5 imports). */
const WASI_VERSION = "0.2.12";

/** The WASI packages `wasi:cli` needs, from the WIT that jco (a dependency of componentize-js) ships. */
const WASI_PACKAGES = ["cli", "clocks", "filesystem", "io", "random", "sockets"];

/**
 * Finds `relative` in the nearest `node_modules` at or above this SDK's directory (as Node resolves packages).
 */
function findModule(relative) {
  for (let dir = sdkDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", relative);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) {
      throw new Error(`cannot find node_modules/${relative} above ${sdkDir}: run npm install (or npm ci) first`);
    }
  }
}

/**
 * A WIT directory for the QuickJS build in `work`: the contract's files, a world `handler-quickjs` that is `handler`
 * plus WASI stdout and stderr (for the prelude's `console`) and random, and the WASI packages those need.
 */
async function quickjsWit(wit, work) {
  const dir = join(work, "wit");
  await mkdir(join(dir, "deps"), { recursive: true });
  let pkg;
  for (const file of (await readdir(wit)).filter((name) => name.endsWith(".wit"))) {
    const text = await readFile(join(wit, file), "utf8");
    pkg ??= /^package\s+([^;]+);/m.exec(text)?.[1];
    await writeFile(join(dir, file), text);
  }
  if (pkg === undefined) throw new Error(`${wit}: no .wit file declares a package`);
  await writeFile(
    join(dir, "handler-quickjs.wit"),
    `package ${pkg};\n\nworld handler-quickjs {\n  include handler;\n` +
      `  import wasi:cli/stdout@${WASI_VERSION};\n  import wasi:cli/stderr@${WASI_VERSION};\n` +
      `  import wasi:random/random@${WASI_VERSION};\n}\n`,
  );
  // The contract's own dependencies (wasi:keyvalue, wasi:config, and wasi:http with what it uses), then the other
  // WASI packages the prelude needs.
  await cp(join(wit, "deps"), join(dir, "deps"), { recursive: true });
  const builtin = findModule(join("@bytecodealliance/jco/lib/wit/builtin", WASI_VERSION));
  for (const name of WASI_PACKAGES) {
    if (existsSync(join(wit, "deps", name))) continue;
    await cp(join(builtin, `wasi-${name}`), join(dir, "deps", `wasi-${name}`), { recursive: true });
  }
  return dir;
}

/**
 * The engines a handler can run on: a module run before the handler's (`prelude`), and a function from the bundled
 * module's path to the component's bytes.
 * QuickJS is the default: a smaller component, compiled by the host in a fraction of the time, and less CPU per
 * event than SpiderMonkey (figures in BENCHMARKS.md). Both pass the same case table (`tests/tests/languages.rs`).
 */
const ENGINES = {
  quickjs: {
    prelude: join(sdkDir, "quickjs-globals.js"),
    async componentize(bundled, wit, work) {
      const { componentize } = await import("componentize-qjs");
      const { component } = await componentize({
        witPath: await quickjsWit(wit, work),
        jsSource: await readFile(bundled, "utf8"),
        jsPath: bundled,
        world: "handler-quickjs",
        // The synchronous runtime: the handler world has no async functions.
        sync: true,
      });
      return component;
    },
  },
  spidermonkey: {
    prelude: undefined,
    async componentize(bundled, wit) {
      const { componentize } = await import("@bytecodealliance/componentize-js");
      const { component } = await componentize({
        sourcePath: bundled,
        witPath: wit,
        worldName: "handler",
        disableFeatures: DISABLED_FEATURES,
      });
      return component;
    },
  },
};

/** The engine used without `--engine`. */
const DEFAULT_ENGINE = "quickjs";

/** Parses `handler.js -o out.wasm [--engine NAME] [--wit DIR] [--bundle FILE]`. */
function parseArgs(argv) {
  const args = { wit: join(sdkDir, "..", "..", "wit"), engine: DEFAULT_ENGINE };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "-o" || arg === "--out") args.out = value();
    else if (arg === "--wit") args.wit = value();
    else if (arg === "--bundle") args.bundle = value();
    else if (arg === "--engine") args.engine = value();
    else if (arg === "-h" || arg === "--help") args.help = true;
    else if (arg.startsWith("-")) throw new Error(`unknown option ${arg}`);
    else if (args.input === undefined) args.input = arg;
    else throw new Error(`one handler module only, got ${args.input} and ${arg}`);
  }
  if (!args.help && (args.input === undefined || args.out === undefined)) {
    throw new Error(USAGE);
  }
  if (!Object.hasOwn(ENGINES, args.engine)) {
    throw new Error(`--engine ${args.engine}: the engines are ${Object.keys(ENGINES).join(" and ")}`);
  }
  return args;
}

/** esbuild's options for bundling `entry` into `outfile` for `engine`. */
function bundleOptions(entry, outfile, engine) {
  return {
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    // "sdk/net" is the module an Eclipse Dirigible handler imports its websockets from; Spin's key-value and
    // variables packages are this SDK's `kv` and `variables`, so a Spin handler's imports work unchanged.
    alias: {
      wasmsock: join(sdkDir, "index.js"),
      "sdk/net": join(sdkDir, "index.js"),
      "@spinframework/spin-kv": join(sdkDir, "kv.js"),
      "@spinframework/spin-variables": join(sdkDir, "variables.js"),
    },
    external: ["wasmsock:*", "wasi:*"],
    // The engine, for the few places where its bindings differ (`kv.js`: 64-bit integers).
    define: { WASMSOCK_ENGINE: JSON.stringify(engine) },
    metafile: true,
    logLevel: "warning",
  };
}

/**
 * What the handler (with everything it imports) uses that the build adds only on demand, `fetch` (`fetch.js`) and
 * `setTimeout`/`setInterval` (`timeouts.js`), and whether it waits for promises (which never settle on QuickJS). Read from the bundled code without comments, so a
 * word in a comment does not count.
 */
async function usesOf(input, engine, work) {
  const outfile = join(work, "scan.js");
  await build({ ...bundleOptions(input, outfile, engine), legalComments: "none", metafile: false });
  const code = await readFile(outfile, "utf8");
  return {
    fetch: /\bfetch\b/.test(code),
    timeouts: /\bset(Timeout|Interval)\b/.test(code),
    promises: /\bawait\b|\.then\(/.test(code),
  };
}

/**
 * Bundles `input` with the SDK into one ES module at `outfile`, with `WASMSOCK_ENGINE` the name of `engine`; the WIT
 * imports stay external for the engine. An entry module runs first what the handler needs from the SDK beyond its
 * imports (the engine's `prelude`, and `fetch.js` and `timeouts.js` when `uses` says so) and calls their per-event
 * hooks before
 * the handler's `onEvent`. Fails if the handler does not export `onEvent`.
 */
async function bundle(input, outfile, engine, prelude, uses, work) {
  // The modules imported first run first: ES modules run in the order they are imported.
  const lines = [];
  const hooks = [];
  if (prelude !== undefined) {
    // It seeds what must differ per instance at the instance's first event.
    lines.push(`import { instanceStarts } from ${JSON.stringify(prelude)};`);
    hooks.push("  instanceStarts();");
  }
  if (uses.fetch) lines.push(`import ${JSON.stringify(join(sdkDir, "fetch.js"))};`);
  if (engine === "quickjs" && (uses.fetch || uses.promises)) {
    console.warn(
      "build.mjs: warning: QuickJS runs no promise jobs within an event: a then or an await never continues, and " +
        'fetch throws; use http.get/post/request from "wasmsock", or --engine spidermonkey',
    );
  }
  if (uses.timeouts) {
    lines.push(`import { timeoutFired } from ${JSON.stringify(join(sdkDir, "timeouts.js"))};`);
    hooks.push("  if (timeoutFired()) return;");
  }
  const entry = join(work, "entry.js");
  await writeFile(
    entry,
    lines.join("\n") +
      `\nimport { onEvent as handlerOnEvent } from ${JSON.stringify(input)};\n` +
      `export * from ${JSON.stringify(input)};\n` +
      `export function onEvent() {\n${hooks.join("\n")}\n  return handlerOnEvent();\n}\n`,
  );
  const result = await build(bundleOptions(entry, outfile, engine));
  const exports = Object.values(result.metafile.outputs).flatMap((output) => output.exports);
  if (!exports.includes("onEvent")) {
    throw new Error(`${input} must export function onEvent() (it exports: ${exports.join(", ") || "nothing"})`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    console.log(USAGE);
    return;
  }
  const work = await mkdtemp(join(tmpdir(), "wasmsock-js-"));
  try {
    const bundled = join(work, "handler.bundle.js");
    const engine = ENGINES[args.engine];
    const uses = await usesOf(resolve(args.input), args.engine, work);
    await bundle(resolve(args.input), bundled, args.engine, engine.prelude, uses, work);
    if (args.bundle) await copyFile(bundled, args.bundle);
    const component = await engine.componentize(bundled, resolve(args.wit), work);
    await writeFile(args.out, component);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`build.mjs: ${err.message ?? err}`);
  process.exit(1);
});
