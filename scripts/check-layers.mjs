#!/usr/bin/env node
// Enforces the import arrows of docs/architecture.md: each layer of src/ may import only the layers listed.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve, sep } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const src = join(root, 'src');

/** layer → layers it may import (itself always allowed). */
const ALLOWED = {
  base: [],
  sys: ['base'],
  kvm: ['base', 'sys'],
  memory: ['base', 'sys'],
  acpi: ['base'],
  devices: ['base', 'sys', 'memory'],
  // arch uses kvm/structs' plain data types (Regs, Sregs, CpuidEntry), never the ioctls.
  arch: ['base', 'memory', 'acpi', 'kvm'],
  vmm: ['base', 'sys', 'kvm', 'memory', 'acpi', 'devices', 'arch'],
  snapshot: ['base', 'sys', 'kvm', 'memory', 'devices', 'arch', 'vmm'],
  migration: ['base', 'sys', 'kvm', 'memory', 'devices', 'arch', 'vmm', 'snapshot'],
  api: ['base', 'vmm', 'snapshot', 'migration'],
  daemon: ['base', 'sys', 'vmm', 'api', 'snapshot', 'migration'],
  client: ['base', 'api'],
  guest: ['base', 'sys'],
  cli: ['base', 'sys', 'kvm', 'vmm', 'api', 'client', 'daemon', 'guest', 'arch'],
  bin: ['base', 'cli'],
  '.': ['base', 'vmm', 'client', 'api', 'guest', 'kvm'],
};
/** Native code (koffi) may be loaded only here. */
const NATIVE_LAYERS = new Set(['sys', 'kvm']);

function* walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* walk(p);
    else if (p.endsWith('.ts')) yield p;
  }
}

const layerOf = (file) => {
  const rel = relative(src, file).split(sep);
  return rel.length === 1 ? '.' : rel[0];
};

const problems = [];
for (const file of walk(src)) {
  const layer = layerOf(file);
  if (!(layer in ALLOWED)) { problems.push(`${relative(root, file)}: unknown layer '${layer}' (add it to scripts/check-layers.mjs)`); continue; }
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    const spec = m[1] ?? m[2];
    if (spec === 'koffi' && !NATIVE_LAYERS.has(layer)) problems.push(`${relative(root, file)}: imports koffi (only src/sys and src/kvm may)`);
    if (!spec.startsWith('.')) continue;
    const target = resolve(dirname(file), spec);
    if (!target.startsWith(src + sep)) { problems.push(`${relative(root, file)}: imports outside src/: ${spec}`); continue; }
    const to = layerOf(target);
    if (to !== layer && !ALLOWED[layer].includes(to)) problems.push(`${relative(root, file)}: layer '${layer}' may not import '${to}' (${spec})`);
  }
}
if (problems.length) {
  console.error(`layer check failed:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log('layer check: ok');
