#!/usr/bin/env node
//! The JavaScript handler build: bundles a handler module with this SDK (esbuild), then turns the bundle into a
//! wasmsock handler component (componentize-js against the repository's `wit/`).
//!
//! Run with `node sdk/js/build.mjs handler.js -o handler.wasm` (or `npm run build -- handler.js -o handler.wasm` in
//! `sdk/js`). Options: `--wit DIR` (default: the `wit/` beside this SDK), `--bundle FILE` (keep the bundled module
//! there, for reading). The handler must `export function onEvent()`; it may `import { websockets } from "wasmsock"`
//! or, as a Dirigible handler does, `from "sdk/net"` (both are this SDK).

import { mkdtemp, rm, writeFile, copyFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";
import { componentize } from "@bytecodealliance/componentize-js";

const sdkDir = dirname(fileURLToPath(import.meta.url));

/** WASI features the host does not provide (wasi:http) or handlers do not use; stdio stays, so errors reach the log. */
const DISABLED_FEATURES = ["http", "fetch-event"];

/** Parses `handler.js -o out.wasm [--wit DIR] [--bundle FILE]`. */
function parseArgs(argv) {
  const args = { wit: join(sdkDir, "..", "..", "wit") };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "-o" || arg === "--out") args.out = value();
    else if (arg === "--wit") args.wit = value();
    else if (arg === "--bundle") args.bundle = value();
    else if (arg === "-h" || arg === "--help") args.help = true;
    else if (arg.startsWith("-")) throw new Error(`unknown option ${arg}`);
    else if (args.input === undefined) args.input = arg;
    else throw new Error(`one handler module only, got ${args.input} and ${arg}`);
  }
  if (!args.help && (args.input === undefined || args.out === undefined)) {
    throw new Error("usage: build.mjs HANDLER.js -o OUT.wasm [--wit DIR] [--bundle FILE]");
  }
  return args;
}

/**
 * Bundles `input` with the SDK into one ES module at `outfile`; the WIT import stays external for componentize-js.
 * Fails if the handler does not export `onEvent`.
 */
async function bundle(input, outfile) {
  const result = await build({
    entryPoints: [input],
    outfile,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    // "sdk/net" is the module an Eclipse Dirigible handler imports its websockets from.
    alias: { wasmsock: join(sdkDir, "index.js"), "sdk/net": join(sdkDir, "index.js") },
    external: ["wasmsock:*"],
    metafile: true,
    logLevel: "warning",
  });
  const exports = Object.values(result.metafile.outputs).flatMap((output) => output.exports);
  if (!exports.includes("onEvent")) {
    throw new Error(`${input} must export function onEvent() (it exports: ${exports.join(", ") || "nothing"})`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    console.log("usage: build.mjs HANDLER.js -o OUT.wasm [--wit DIR] [--bundle FILE]");
    return;
  }
  const work = await mkdtemp(join(tmpdir(), "wasmsock-js-"));
  try {
    const bundled = join(work, "handler.bundle.js");
    await bundle(resolve(args.input), bundled);
    if (args.bundle) await copyFile(bundled, args.bundle);
    const { component } = await componentize({
      sourcePath: bundled,
      witPath: resolve(args.wit),
      worldName: "handler",
      disableFeatures: DISABLED_FEATURES,
    });
    await writeFile(args.out, component);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`build.mjs: ${err.message ?? err}`);
  process.exit(1);
});
