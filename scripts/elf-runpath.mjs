// The run paths (DT_RUNPATH, or the older DT_RPATH) of a 64-bit little-endian ELF shared object,
// read from its dynamic section without binutils. scripts/prebuild.mjs uses it: an addon linked
// against a pip torch carries the builder's site-packages/torch/lib as its run path, and would load
// that libtorch (or none) on a user's machine.
import { readFileSync } from 'node:fs';

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const DT_NULL = 0n;
const DT_STRTAB = 5n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;

/** { runpath: string[], rpath: string[] } of `file`; throws when it is not an ELF64 LE file. */
export function readRunPaths(file) {
  const elf = readFileSync(file);
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
  if (elf[4] !== 2 || elf[5] !== 1) throw new Error(`${file} is not a 64-bit little-endian ELF file`);
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  const segments = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 56 > elf.length) throw new Error(`${file}: program header ${i} lies past the end of the file`);
    segments.push({
      type: elf.readUInt32LE(at),
      offset: Number(elf.readBigUInt64LE(at + 8)),
      vaddr: Number(elf.readBigUInt64LE(at + 16)),
      filesz: Number(elf.readBigUInt64LE(at + 32)),
    });
  }
  const dynamic = segments.find((s) => s.type === PT_DYNAMIC);
  if (!dynamic) return { runpath: [], rpath: [] }; // statically linked
  let strtab;
  const wanted = [];
  for (let at = dynamic.offset; at + 16 <= dynamic.offset + dynamic.filesz; at += 16) {
    const tag = elf.readBigUInt64LE(at);
    const value = elf.readBigUInt64LE(at + 8);
    if (tag === DT_NULL) break;
    if (tag === DT_STRTAB) strtab = Number(value);
    if (tag === DT_RUNPATH || tag === DT_RPATH) wanted.push({ tag, offset: Number(value) });
  }
  const result = { runpath: [], rpath: [] };
  if (wanted.length === 0) return result;
  // DT_STRTAB holds an address: the file offset is where a loaded segment maps it.
  const load = segments.find((s) => s.type === PT_LOAD && strtab >= s.vaddr && strtab < s.vaddr + s.filesz);
  if (strtab === undefined || !load) throw new Error(`${file}: the dynamic string table is not in a loaded segment`);
  const table = strtab - load.vaddr + load.offset;
  for (const { tag, offset } of wanted) {
    const start = table + offset;
    const end = elf.indexOf(0, start);
    if (start >= elf.length || end < 0) throw new Error(`${file}: a run path lies past the end of the file`);
    const paths = elf.toString('utf8', start, end).split(':').filter((p) => p !== '');
    (tag === DT_RUNPATH ? result.runpath : result.rpath).push(...paths);
  }
  return result;
}

/** The run path entries that point outside the system's library folders and the addon's own folder. */
export function foreignRunPaths(file) {
  const { runpath, rpath } = readRunPaths(file);
  return [...runpath, ...rpath].filter((p) => !/^\$(ORIGIN|\{ORIGIN\})(\/|$)/.test(p) && !/^\/(usr\/)?lib(64)?(\/|$)/.test(p));
}
