// Unit tests of the per-vCPU CPUID filter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { filterCpuid } from '../../../src/arch/x86_64/cpuid.js';
import type { CpuidEntry } from '../../../src/kvm/structs.js';

const leaf = (fn: number, index = 0, r: Partial<CpuidEntry> = {}): CpuidEntry =>
  ({ function: fn, index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...r });
const find = (out: CpuidEntry[], fn: number, index = 0): CpuidEntry => out.find((e) => e.function === fn && e.index === index)!;
/** Leaf 0 with the vendor's EBX ("Genu" or "Auth"). */
const INTEL = leaf(0, 0, { eax: 0x1f, ebx: 0x756e6547 });
const AMD = leaf(0, 0, { eax: 0x10, ebx: 0x68747541 });

test('leaf 1 carries the APIC ID, CLFLUSH size, logical CPU count, HTT and the hypervisor bit; PDCM is hidden', () => {
  const input = [leaf(1, 0, { ebx: 0xff10_0801, ecx: 0x1 | (1 << 15), edx: 1 << 28 })];
  const l1 = filterCpuid(input, { vcpuIndex: 2, vcpuCount: 3 })[0]!;
  assert.equal(l1.ebx, 0x0204_0801);
  assert.equal(l1.ecx, 0x8000_0001);
  assert.equal(l1.edx, 1 << 28);
  assert.equal(input[0]!.ebx, 0xff10_0801, 'input untouched');
  const single = filterCpuid([leaf(1, 0, { edx: 1 << 28 })], { vcpuIndex: 0, vcpuCount: 1 })[0]!;
  assert.equal(single.edx, 0);
  assert.equal(single.ebx, 0x0001_0800);
  assert.equal(filterCpuid([leaf(1)], { vcpuIndex: 0, vcpuCount: 1, tscDeadline: true })[0]!.ecx, 0x8100_0000);
});

test('leaf 0xB describes one thread per core and the x2APIC ID; missing levels are added', () => {
  const out = filterCpuid([leaf(0xb, 0), leaf(0xb, 1), leaf(0xb, 2)], { vcpuIndex: 3, vcpuCount: 4 });
  assert.deepEqual(out.filter((e) => e.function === 0xb).map((e) => [e.eax, e.ebx, e.ecx, e.edx]),
    [[0, 1, 0x100, 3], [2, 4, 0x201, 3], [0, 0, 2, 3]]);
  const added = filterCpuid([leaf(0xb, 0)], { vcpuIndex: 1, vcpuCount: 5 });
  assert.deepEqual(find(added, 0xb, 1), { function: 0xb, index: 1, flags: 1, eax: 3, ebx: 5, ecx: 0x201, edx: 1 });
});

test('the KVM signature leaf is set or added', () => {
  for (const input of [[], [leaf(0x40000000, 0, { eax: 0x40000001 })]]) {
    const sig = find(filterCpuid(input, { vcpuIndex: 0, vcpuCount: 1 }), 0x40000000);
    assert.equal(sig.eax, 0x40000001);
    assert.equal(Buffer.from(new Uint32Array([sig.ebx, sig.ecx, sig.edx]).buffer).toString('latin1'), 'KVMKVMKVM\0\0\0');
  }
});

test('Intel cache leaf 4: L1/L2 per core, L3 shared by the package, cores per package', () => {
  const l1d = 0x121 | (7 << 14) | (3 << 26); // level 1 data, host values to be replaced
  const l3 = 0x163 | (0x3f << 14);
  const out = filterCpuid([INTEL, leaf(4, 0, { eax: l1d }), leaf(4, 3, { eax: l3 }), leaf(4, 4)], { vcpuIndex: 0, vcpuCount: 4 });
  assert.equal(find(out, 4, 0).eax, 0x121 | (3 << 26));
  assert.equal(find(out, 4, 3).eax, 0x163 | (3 << 14) | (3 << 26));
  assert.equal(find(out, 4, 4).eax, 0, 'the null descriptor stays null');
});

test('power management and the PMU are hidden', () => {
  const out = filterCpuid([leaf(6, 0, { eax: 0x77, ecx: 0x9 }), leaf(0xa, 0, { eax: 0x07300805, ebx: 1, edx: 0x603 })], { vcpuIndex: 0, vcpuCount: 1 });
  assert.deepEqual([find(out, 6).eax, find(out, 6).ecx], [0x75, 0x1]);
  assert.deepEqual(find(out, 0xa), leaf(0xa));
});

test('AMD: core count and APIC ID size in 0x80000008, extended APIC ID, no ARCH_CAPABILITIES', () => {
  const input = [AMD, leaf(7, 0, { edx: (1 << 29) | 1 }), leaf(0x80000008, 0, { ecx: 0x7007 }), leaf(0x8000001e, 0, { eax: 9, ebx: 0x100, ecx: 0x300 }),
    leaf(0x8000001d, 2, { eax: 0x163 | (0xf << 14) })];
  const out = filterCpuid(input, { vcpuIndex: 5, vcpuCount: 6 });
  assert.equal(find(out, 7).edx, 1);
  assert.equal(find(out, 0x80000008).ecx, 0x3005);
  assert.deepEqual([find(out, 0x8000001e).eax, find(out, 0x8000001e).ebx, find(out, 0x8000001e).ecx], [5, 5, 0]);
  assert.equal(find(out, 0x8000001d, 2).eax, 0x163 | (5 << 14));
  // On Intel these leaves are reserved and left as KVM reports them.
  const intel = filterCpuid([INTEL, leaf(7, 0, { edx: 1 << 29 }), leaf(0x80000008, 0, { ecx: 0 })], { vcpuIndex: 1, vcpuCount: 2 });
  assert.equal(find(intel, 7).edx, 1 << 29);
  assert.equal(find(intel, 0x80000008).ecx, 0);
});

test('on PVM hosts the hypercall-based KVM features are hidden, the others kept; hide clears any bit', () => {
  const pv = leaf(0x40000001, 0, { eax: 0x1ffff });
  const hidden = find(filterCpuid([pv], { vcpuIndex: 0, vcpuCount: 1, noHypercalls: true }), 0x40000001);
  assert.equal(hidden.eax, 0x1ffff & ~((1 << 7) | (1 << 11) | (1 << 13) | (1 << 16)));
  assert.equal(find(filterCpuid([pv], { vcpuIndex: 0, vcpuCount: 1 }), 0x40000001).eax, 0x1ffff);
  const out = filterCpuid([leaf(1, 0, { ecx: 1 << 26 }), leaf(0xd, 0, { eax: 7 }), leaf(0xd, 1, { eax: 0xf })], {
    vcpuIndex: 0, vcpuCount: 1,
    hide: [{ function: 1, register: 'ecx', bit: 26 }, { function: 0xd, index: 1, register: 'eax', bit: 3 }, { function: 1, register: 'ecx', bit: 31 }],
  });
  assert.equal(find(out, 1).ecx, 0);
  assert.deepEqual([find(out, 0xd, 0).eax, find(out, 0xd, 1).eax], [7, 7]);
});

test('impossible vCPU numbers are refused', () => {
  assert.throws(() => filterCpuid([], { vcpuIndex: 2, vcpuCount: 2 }), /index below it/);
  assert.throws(() => filterCpuid([], { vcpuIndex: 0, vcpuCount: 256 }), /1\.\.255/);
});
