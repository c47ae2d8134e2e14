// The TypeScript build: tsc, then binding.d.ts beside the emitted lib/. The emitted declarations
// import '../binding.js' (the addon's types), which a package's users resolve to dist/binding.d.ts;
// tsc emits nothing for a .d.ts input, so it is copied.
// Usage: node scripts/build-ts.mjs [outDir]   (default: dist)
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const outDir = path.resolve(process.argv[2] ?? path.join(root, 'dist'));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
// tsc never deletes what it emitted from a source that is gone since: a removed or renamed lib/ file
// would stay in dist/ and ship in the package (`npm pack` runs this as "prepare"). So the folders it
// emits (tsconfig.json's include roots) start empty.
for (const emitted of ['lib', 'bench']) rmSync(path.join(outDir, emitted), { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json'), '--outDir', outDir], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
mkdirSync(outDir, { recursive: true });
copyFileSync(path.join(root, 'binding.d.ts'), path.join(outDir, 'binding.d.ts'));
