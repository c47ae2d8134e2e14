// Reads golden fixtures in the wan-tiny format (manifest.json -> case JSON + safetensors).
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { TensorData } from '../binding.js';
import { native } from './native.js';

export interface FixtureTensorSpec {
  tensor: string;
  shape: number[];
  dtype: string;
  desc?: string;
}

export interface FixtureCase {
  /** Folder holding manifest.json. */
  root: string;
  family: string;
  case: string;
  kind: string;
  /** The model folder of the case's family (Diffusers layout). */
  modelDir: string;
  json: {
    inputs: Record<string, FixtureTensorSpec>;
    outputs: Record<string, FixtureTensorSpec>;
    intermediates?: Record<string, FixtureTensorSpec>;
    params: Record<string, any>;
    tolerance: Record<string, any>;
  };
  tensors: Record<string, TensorData>;
  input(name: string): TensorData;
  output(name: string): TensorData;
  intermediate(name: string): TensorData;
}

export interface ManifestEntry {
  family: string;
  case: string;
  kind: string;
  json: string;
}

export async function readManifest(root: string): Promise<ManifestEntry[]> {
  const manifest = JSON.parse(await readFile(path.join(root, 'manifest.json'), 'utf8'));
  const entries: ManifestEntry[] = [];
  for (const [family, fam] of Object.entries<any>(manifest.families ?? {})) {
    for (const c of fam.cases ?? []) entries.push({ family, case: c.case, kind: c.kind, json: c.json });
  }
  for (const c of manifest.global_cases ?? []) entries.push({ family: 'global', case: c.case, kind: c.kind, json: c.json });
  return entries;
}

export async function loadCase(root: string, entry: ManifestEntry): Promise<FixtureCase> {
  const jsonPath = path.join(root, entry.json);
  const json = JSON.parse(await readFile(jsonPath, 'utf8'));
  const tensorsFile = path.join(path.dirname(jsonPath), json.tensors_file);
  const { tensors } = await native().readSafetensors(tensorsFile);
  const pick = (group: Record<string, FixtureTensorSpec> | undefined, name: string, what: string) => {
    const spec = group?.[name];
    if (!spec) throw new Error(`${entry.family}/${entry.case}: no ${what} '${name}'`);
    const t = tensors[spec.tensor];
    if (!t) throw new Error(`${entry.family}/${entry.case}: tensor '${spec.tensor}' missing from ${tensorsFile}`);
    return t;
  };
  return {
    root,
    family: entry.family,
    case: entry.case,
    kind: entry.kind,
    modelDir: path.join(root, entry.family),
    json,
    tensors,
    input: (n) => pick(json.inputs, n, 'input'),
    output: (n) => pick(json.outputs, n, 'output'),
    intermediate: (n) => pick(json.intermediates, n, 'intermediate'),
  };
}

/** Loads one case by family and case name. */
export async function loadCaseByName(root: string, family: string, caseName: string): Promise<FixtureCase> {
  const entry = (await readManifest(root)).find((e) => e.family === family && e.case === caseName);
  if (!entry) throw new Error(`no case ${family}/${caseName} in ${root}/manifest.json`);
  return loadCase(root, entry);
}
