// Unit tests of the per-vCPU CPUID filter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { filterCpuid } from '../../../src/arch/x86_64/cpuid.js';
import type { CpuidEntry } from '../../../src/kvm/structs.js';

const leaf = (fn: number, index = 0, r: Partial<CpuidEntry> = {}): CpuidEntry =>
  ({ function: fn, index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...r });

test('leaf 1 carries the APIC ID, CPU count and the hypervisor bit', () => {
  const out = filterCpuid([leaf(1, 0, { ebx: 0xff00_0800, ecx: 0x1, edx: 1 << 28 })], { vcpuIndex: 2, vcpuCount: 4 });
  const l1 = out.find((e) => e.function === 1)!;
  assert.equal(l1.ebx >>> 24, 2);
  assert.equal((l1.ebx >>> 16) & 0xff, 4);
  assert.equal(l1.ebx & 0xffff, 0x0800);
  assert.equal(l1.ecx >>> 31, 1);
  assert.equal(filterCpuid([leaf(1, 0, { edx: 1 << 28 })], { vcpuIndex: 0, vcpuCount: 1 })[0]!.edx, 0);
});

test('leaf 0xB describes one thread per core and the x2APIC ID; the KVM signature is present', () => {
  const out = filterCpuid([leaf(0xb, 0), leaf(0xb, 1), leaf(0xb, 2)], { vcpuIndex: 3, vcpuCount: 4 });
  assert.deepEqual(out.filter((e) => e.function === 0xb).map((e) => [e.eax, e.ebx, e.ecx, e.edx]),
    [[0, 1, 0x100, 3], [2, 4, 0x201, 3], [0, 0, 2, 3]]);
  const sig = out.find((e) => e.function === 0x40000000)!;
  assert.equal(Buffer.from(new Uint32Array([sig.ebx, sig.ecx, sig.edx]).buffer).toString('latin1').replace(/\0+$/, ''), 'KVMKVMKVM');
});

test('on PVM hosts the hypercall-based KVM features are hidden, the others kept', () => {
  const pv = leaf(0x40000001, 0, { eax: 0x1ffff });
  const hidden = filterCpuid([pv], { vcpuIndex: 0, vcpuCount: 1, noHypercalls: true }).find((e) => e.function === 0x40000001)!;
  assert.equal(hidden.eax, 0x1ffff & ~((1 << 7) | (1 << 11) | (1 << 13) | (1 << 16)));
  const kept = filterCpuid([pv], { vcpuIndex: 0, vcpuCount: 1 }).find((e) => e.function === 0x40000001)!;
  assert.equal(kept.eax, 0x1ffff);
});
