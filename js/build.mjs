// Builds every JavaScript component of the repository into
// target/guests/js/<directory name>.wasm with componentize-js.
//
// A JavaScript component is a directory under connectors/ or
// tests/components-js/ with a package.json that names its world of
// wit/v0.1.0 under "weft": { "world": "mapper-connector" } and an index.js
// (or the package.json's "main"). componentize-js runs with the repository
// root as its working directory, so a component may import any file of the
// repository by a relative path (the SDK: '../sdk-js/index.js').
//
// A component is rebuilt only when one of its inputs (its directory, the
// SDK, the WIT, the pinned toolchain) is newer than its .wasm.
//
//   node build.mjs            build what is out of date
//   node build.mjs --force    build everything
//   node build.mjs NAME...    only these components

import { componentize } from '@bytecodealliance/componentize-js';
import { entryModule } from '../connectors/sdk-js/entry.mjs';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const out = join(root, 'target/guests/js');
const wit = join(root, 'wit/v0.1.0');
const roots = ['connectors', 'tests/components-js'];

const args = process.argv.slice(2);
const force = args.includes('--force');
const only = args.filter((a) => !a.startsWith('--'));

/** Newest modification time of the files under `path` (node_modules skipped). */
function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let t = st.mtimeMs;
  for (const e of readdirSync(path)) {
    if (e === 'node_modules' || e === 'target') continue;
    t = Math.max(t, newest(join(path, e)));
  }
  return t;
}

const components = [];
for (const r of roots) {
  const base = join(root, r);
  if (!existsSync(base)) continue;
  for (const name of readdirSync(base).sort()) {
    const pkgPath = join(base, name, 'package.json');
    if (!existsSync(pkgPath)) continue;
    const pkg = JSON.parse(readFileSync(pkgPath, 'utf8'));
    if (!pkg.weft?.world) continue;
    components.push({ name, dir: join(base, name), world: pkg.weft.world, main: pkg.main ?? 'index.js' });
  }
}
for (const name of only) {
  if (!components.some((c) => c.name === name)) {
    console.error(`no JavaScript component named ${name} (a directory under ${roots.join(' or ')} whose package.json has "weft": { "world": ... })`);
    process.exit(1);
  }
}

const shared = Math.max(
  newest(join(root, 'connectors/sdk-js')),
  newest(wit),
  newest(join(here, 'package-lock.json')),
  newest(join(here, 'build.mjs')),
);

await mkdir(out, { recursive: true });
// componentize-js maps its working directory to `/` for the engine, so
// relative imports between directories of the repository resolve.
process.chdir(root);
let failed = 0;
for (const c of components) {
  if (only.length && !only.includes(c.name)) continue;
  const target = join(out, `${c.name}.wasm`);
  if (!force && existsSync(target) && statSync(target).mtimeMs >= Math.max(shared, newest(c.dir))) {
    console.log(`${c.name}: up to date (${relative(root, target)})`);
    continue;
  }
  const started = Date.now();
  try {
    // The entry names an escaping exception's class (see sdk-js/entry.mjs).
    const entry = join(out, 'entries', `${c.name}.mjs`);
    const main = relative(dirname(entry), join(c.dir, c.main));
    await mkdir(dirname(entry), { recursive: true });
    await writeFile(entry, entryModule(c.world, main.startsWith('.') ? main : `./${main}`));
    const { component } = await componentize({
      sourcePath: entry,
      witPath: wit,
      worldName: c.world,
    });
    await writeFile(target, component);
    const mib = (component.length / (1 << 20)).toFixed(1);
    console.log(`${c.name}: ${relative(root, target)} (${c.world}, ${mib} MiB, ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed += 1;
    console.error(`${c.name}: componentize-js failed:\n${e instanceof Error ? e.message : e}`);
  }
}
process.exit(failed ? 1 : 0);
