#!/usr/bin/env node
// Builds a JavaScript operator to a Weir component:
//
//     node build.mjs app.js -o app.wasm
//
// The module's folder is copied to a scratch folder with weir.js beside it (so the module
// imports "./weir.js"), then componentize-js builds it against Weir's WIT without the
// HTTP features (an operator has no network) and without AOT. componentize-js is looked
// up from the working directory's node_modules, else from $WEIR_TOOLS_DIR/js (where
// `cargo xtask setup` installs it).

import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const sdk = dirname(fileURLToPath(import.meta.url));
const wit = join(sdk, "..", "..", "wit");

function usage(problem) {
  console.error(`build.mjs: ${problem}\nusage: node build.mjs SOURCE.js -o OUT.wasm`);
  process.exit(2);
}

const args = process.argv.slice(2);
const outAt = args.indexOf("-o");
if (outAt < 0 || outAt + 1 >= args.length) usage("missing -o OUT.wasm");
const out = resolve(args[outAt + 1]);
const sources = args.filter((_, i) => i !== outAt && i !== outAt + 1);
if (sources.length !== 1) usage("give exactly one SOURCE.js");
const source = resolve(sources[0]);

async function componentizeJs() {
  const tools = process.env.WEIR_TOOLS_DIR || join(homedir(), ".cache", "weir", "tools");
  for (const base of [process.cwd(), join(tools, "js")]) {
    const entry = join(base, "node_modules", "@bytecodealliance", "componentize-js", "src", "componentize.js");
    if (existsSync(entry)) return (await import(pathToFileURL(entry))).componentize;
  }
  console.error(
    "build.mjs: @bytecodealliance/componentize-js is not installed: run `cargo xtask setup`, " +
      "or `npm install @bytecodealliance/componentize-js@0.23.0` in this folder",
  );
  process.exit(1);
}

const componentize = await componentizeJs();
const scratch = await mkdtemp(join(tmpdir(), "weir-js-"));
try {
  await cp(dirname(source), scratch, { recursive: true });
  await cp(join(sdk, "weir.js"), join(scratch, "weir.js"));
  const { component } = await componentize({
    sourcePath: join(scratch, basename(source)),
    witPath: wit,
    worldName: "operator",
    disableFeatures: ["http", "fetch-event"],
  });
  await writeFile(out, component);
} finally {
  await rm(scratch, { recursive: true, force: true });
}
