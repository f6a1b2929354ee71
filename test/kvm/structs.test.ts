// Checks our KVM struct layouts, ioctl numbers and capability numbers against the kernel's uapi headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KVM, KVM_CAP } from '../../src/kvm/ioctls.js';
import { LAYOUT, decodeRegs, encodeRegs, decodeSregs, encodeSregs, zeroRegs } from '../../src/kvm/structs.js';
import { compileC, runProgram } from '../helpers/native.js';

const IOCTL_C_NAMES: Record<string, string> = Object.fromEntries(Object.keys(KVM).map((k) => [k, `KVM_${k}`]));

function cProgram(): string {
  const lines: string[] = [];
  for (const [struct, fields] of Object.entries(LAYOUT)) {
    const type = struct === 'kvm_run' ? 'struct kvm_run' : `struct ${struct}`;
    if ('size' in fields) lines.push(`P("${struct}.size", sizeof(${type}));`);
    for (const f of Object.keys(fields)) {
      if (f === 'size') continue;
      const member = cMember(struct, f);
      lines.push(`P("${struct}.${f}", offsetof(${type}, ${member}));`);
    }
  }
  for (const [k, c] of Object.entries(IOCTL_C_NAMES)) lines.push(`P("ioctl.${k}", (unsigned long)${c});`);
  for (const k of Object.keys(KVM_CAP)) lines.push(`P("cap.${k}", KVM_CAP_${k});`);
  return `#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\n` +
    `#define P(n, v) printf("%s %lu\\n", n, (unsigned long)(v))\nint main(void) {\n${lines.join('\n')}\nreturn 0; }\n`;
}

/** Our short field names → the C member designators where they differ. */
function cMember(struct: string, field: string): string {
  const map: Record<string, Record<string, string>> = {
    kvm_run: { exit: 'io', s: 's' },
    kvm_vcpu_events: { exception: 'exception', interrupt: 'interrupt', nmi: 'nmi', smi: 'smi' },
    kvm_irq_routing_entry: { u: 'u' },
  };
  return map[struct]?.[field] ?? field;
}

test('struct sizes, offsets, ioctl and capability numbers match <linux/kvm.h>', () => {
  const out = runProgram(compileC(cProgram()));
  const c = new Map(out.trim().split('\n').map((l) => { const [k, v] = l.split(' '); return [k!, Number(v)]; }));
  const mismatches: string[] = [];
  for (const [struct, fields] of Object.entries(LAYOUT)) {
    for (const [f, v] of Object.entries(fields)) {
      const key = `${struct}.${f}`;
      if (c.get(key) !== v) mismatches.push(`${key}: ours ${v}, kernel ${c.get(key)}`);
    }
  }
  for (const [k, v] of Object.entries(KVM)) if (c.get(`ioctl.${k}`) !== v) mismatches.push(`KVM_${k}: ours ${v.toString(16)}, kernel ${c.get(`ioctl.${k}`)?.toString(16)}`);
  for (const [k, v] of Object.entries(KVM_CAP)) if (c.get(`cap.${k}`) !== v) mismatches.push(`KVM_CAP_${k}: ours ${v}, kernel ${c.get(`cap.${k}`)}`);
  assert.deepEqual(mismatches, []);
});

test('regs and sregs round-trip through their byte encodings', () => {
  const r = zeroRegs();
  r.rip = 0xffffffff81000000n; r.rflags = 2n; r.r15 = 0x123456789abcdef0n;
  assert.deepEqual(decodeRegs(encodeRegs(r)), r);
  const bytes = new Uint8Array(312).map((_, i) => (i * 7) & 0xff);
  // Zero the padding bytes the encoder writes as zero so the round trip is exact.
  for (let s = 0; s < 8; s++) bytes[s * 24 + 23] = 0;
  for (const t of [0, 1]) for (let p = 202; p < 208; p++) bytes[p + t * 16] = 0;
  assert.deepEqual(encodeSregs(decodeSregs(bytes)), bytes);
});
