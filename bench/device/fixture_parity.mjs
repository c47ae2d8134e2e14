// The golden-fixture parity checks of `wan-video parity` (lib/parity.ts), run from a built dist/
// without node_modules, as on the GPU machine: every component and the whole pipelines of
// test/fixtures/wan-tiny in float32 on the device (TF32 off), once per offload mode, against the
// reference outputs under the manifests' tolerances. The addon comes from WAN_VIDEO_ADDON.
//
//   node bench/device/fixture_parity.mjs DIST FIXTURES DEVICE OFFLOADS OUT.jsonl
//   e.g. node bench/device/fixture_parity.mjs .device/dist test/fixtures/wan-tiny cuda none,model,sequential results/fixtures.jsonl
//
// Prints one line per check; appends one JSON line per offload mode to OUT.jsonl; exits 1 when a
// mode has a failure.
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [dist, fixtures, device, offloads, out] = process.argv.slice(2);
if (!out) {
  console.error('usage: fixture_parity.mjs DIST FIXTURES DEVICE OFFLOADS OUT.jsonl');
  process.exit(2);
}
const { runParity } = await import(pathToFileURL(path.resolve(dist, 'lib', 'parity.js')).href);

let failed = false;
for (const offload of offloads.split(',')) {
  let report;
  try {
    report = await runParity(fixtures, (line) => console.log(line), { device, offload });
  } catch (err) {  // the device is not there, or the addon does not load: one line that says so
    console.log(`FAIL ${err.code ?? 'error'}: ${err.message}`);
    report = { checks: [], failures: [`${err.code ?? 'error'}: ${err.message}`], ok: false };
  }
  // The check closest to its tolerance (the exact checks count as 0 or infinitely far).
  let worst;
  for (const c of report.checks) {
    const ratio = c.tolerance > 0 ? c.error / c.tolerance : c.error === 0 ? 0 : Infinity;
    if (!worst || ratio > worst.ratio) worst = { name: c.name, error: c.error, tolerance: c.tolerance, ratio };
  }
  const line = {
    tool: 'fixture_parity', device, offload, dtype: 'float32',
    passed: report.checks.filter((c) => c.ok).length, failed: report.failures.length,
    failures: report.failures, worst,
  };
  appendFileSync(out, `${JSON.stringify(line)}\n`);
  failed ||= !report.ok;
}
process.exitCode = failed ? 1 : 0;
