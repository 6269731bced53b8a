// Builds this connector into target/NAME.wasm (NAME from package.json) with
// componentize-js: the one `npm install` puts in this folder (package.json
// pins the version weft is tested with), else the one of weft's checkout.
//
// The sources import weft's JS SDK by its absolute path, which node and
// editors follow. componentize-js runs the module in an engine that sees one
// folder as `/` and follows relative imports only, so the build copies this
// folder's modules and the SDK, each to its own absolute path, under a
// temporary folder that the engine sees as `/`, and makes the absolute
// imports of the copies relative. Nothing is written into the sources.
//
//   node build.mjs
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sdk = '__SDK_DIR__';
const checkout = join(sdk, '../..');
// The WIT inside the SDK (as `weft sdk path` writes it), else the checkout's.
const wit = [join(sdk, 'wit/v0.1.0'), join(checkout, 'wit/v0.1.0')].find((d) => existsSync(d));
// componentize-js from this connector's own node_modules (`npm install`
// installs the version package.json pins), else from weft's checkout.
const tool = [here, join(checkout, 'js')]
  .map((d) => join(d, 'node_modules/@bytecodealliance/componentize-js/src/componentize.js'))
  .find((t) => existsSync(t));
const pkg = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
const out = join(here, 'target', `${pkg.name}.wasm`);

/**
 * The modules under `dir` (`node_modules`, `target` and `.git` left out).
 * @param {string} dir
 * @returns {string[]}
 */
function modules(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return ['node_modules', 'target', '.git'].includes(e.name) ? [] : modules(path);
    return /\.m?js$/.test(e.name) ? [path] : [];
  });
}

/**
 * The text of module `file` with its absolute imports made relative.
 * @param {string} file
 */
function withRelativeImports(file) {
  return readFileSync(file, 'utf8').replace(
    /(\bfrom\s*|\bimport\s*\(?\s*)(['"])(\/[^'"\n]+)\2/g,
    (_, before, quote, path) => {
      const rel = relative(dirname(file), path);
      return `${before}${quote}${rel.startsWith('.') ? rel : `./${rel}`}${quote}`;
    },
  );
}

if (!tool || !wit) {
  console.error(!wit ? `no WIT in ${sdk}: pass the directory \`weft sdk path --lang js\` prints` : 'no componentize-js: run `npm install` here (package.json pins it), or `make guests-js` in weft\'s checkout');
  process.exit(1);
}
const { componentize } = await import(pathToFileURL(tool).href);

const root = mkdtempSync(join(tmpdir(), 'weft-build-'));
try {
  for (const file of modules(here)) {
    mkdirSync(dirname(join(root, file)), { recursive: true });
    writeFileSync(join(root, file), withRelativeImports(file));
  }
  cpSync(sdk, join(root, sdk), { recursive: true });
  // The entry names an escaping exception's class (see the SDK's entry.mjs).
  const { entryModule } = await import(pathToFileURL(join(sdk, 'entry.mjs')).href);
  const entry = join(root, here, '.weft-entry.mjs');
  writeFileSync(entry, entryModule(pkg.weft.world, `./${pkg.main ?? 'index.js'}`));
  process.chdir(root);
  const started = Date.now();
  const { component } = await componentize({
    sourcePath: entry,
    witPath: wit,
    worldName: pkg.weft.world,
  });
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, component);
  const mib = (component.length / (1 << 20)).toFixed(1);
  console.log(`${out} (${pkg.weft.world}, ${mib} MiB, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
} finally {
  process.chdir(here);
  rmSync(root, { recursive: true, force: true });
}
