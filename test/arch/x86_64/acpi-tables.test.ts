// Typevisor's machine ACPI tables, read back by a real ACPI implementation: ACPICA's disassembler
// (iasl -d) decodes every table, and its AML interpreter (acpiexec) loads the DSDT and runs it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildAcpiTables, writeAcpiTables } from '../../../src/arch/x86_64/acpi-tables.js';
import { LAYOUT, PLATFORM } from '../../../src/arch/x86_64/layout.js';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { tempDir } from '../../helpers/native.js';
import { hasAcpicaTools } from '../../helpers/acpica.js';

const GiB = 2 ** 30;
const sum = (b: Uint8Array): number => b.reduce((s, x) => (s + x) & 0xff, 0);
const acpica = hasAcpicaTools() ? false : 'SKIPPED: acpica-tools (iasl, acpiexec) not installed';

test('every table sums to zero, sits in the BIOS area, and the XSDT/FADT point at the others', () => {
  for (const vcpus of [1, 2, 4, 8, 64, PLATFORM.MAX_VCPUS]) {
    const built = buildAcpiTables({ vcpus, memoryBytes: 6 * GiB });
    const at = new Map(built.tables.map((t) => [t.signature, t]));
    for (const t of built.tables) {
      assert.equal(sum(t.signature === 'RSDP' ? t.bytes.subarray(0, 36) : t.bytes), 0, `${t.signature} checksum`);
      assert.ok(t.address >= LAYOUT.ACPI_TABLES && t.address + t.bytes.length <= LAYOUT.ACPI_TABLES_END);
    }
    const x = at.get('XSDT')!;
    const dv = new DataView(x.bytes.buffer);
    const pointed = [0, 1, 2].map((i) => Number(dv.getBigUint64(36 + 8 * i, true)));
    assert.deepEqual(pointed, ['FACP', 'APIC', 'MCFG'].map((s) => at.get(s)!.address));
    const f = at.get('FACP')!;
    assert.equal(Number(new DataView(f.bytes.buffer).getBigUint64(140, true)), at.get('DSDT')!.address);
    assert.equal(Number(new DataView(at.get('RSDP')!.bytes.buffer).getBigUint64(24, true)), x.address);
    const madt = at.get('APIC')!.bytes;
    const lapics = [];
    for (let o = 44; o < madt.length; o += madt[o + 1]!) if (madt[o] === 0) lapics.push(madt[o + 3]);
    assert.equal(lapics.length, vcpus);
  }
});

test('tables do not overlap, and are written where they say', () => {
  const built = buildAcpiTables({ vcpus: 4, memoryBytes: GiB });
  const sorted = [...built.tables].sort((a, b) => a.address - b.address);
  for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i - 1]!.address + sorted[i - 1]!.bytes.length <= sorted[i]!.address);
  const memory = new GuestMemory(new Uint8Array(2 * 2 ** 20), [{ gpa: 0, size: 2 * 2 ** 20, hostOffset: 0 }]);
  assert.equal(writeAcpiTables(memory, { vcpus: 4, memoryBytes: GiB }), LAYOUT.ACPI_TABLES);
  for (const t of built.tables) assert.deepEqual(memory.read(t.address, t.bytes.length), t.bytes);
  assert.throws(() => buildAcpiTables({ vcpus: 0, memoryBytes: GiB }), /vCPUs/);
  assert.throws(() => buildAcpiTables({ vcpus: 255, memoryBytes: GiB }), /vCPUs/);
});

function writeTables(vcpus: number, memoryBytes: number): { dir: string; files: Map<string, string> } {
  const dir = tempDir('typevisor-acpi-');
  const files = new Map<string, string>();
  for (const t of buildAcpiTables({ vcpus, memoryBytes }).tables) {
    const file = join(dir, `${t.signature.toLowerCase()}.dat`);
    writeFileSync(file, t.bytes);
    files.set(t.signature, file);
  }
  return { dir, files };
}

test('iasl -d decodes every table (but the RSDP, which has no table header) without errors', { skip: acpica }, () => {
  const { files } = writeTables(4, 6 * GiB);
  for (const [signature, file] of files) {
    if (signature === 'RSDP') continue;
    const r = spawnSync('iasl', ['-d', file], { encoding: 'utf8' });
    const out = `${r.stdout}${r.stderr}`;
    assert.equal(r.status, 0, `iasl -d ${signature}:\n${out}`);
    assert.doesNotMatch(out, /error|warning/i, `${signature}:\n${out}`);
    const dsl = execFileSync('cat', [file.replace(/\.dat$/, '.dsl')], { encoding: 'utf8' });
    if (signature === 'DSDT') {
      for (const want of ['Device (PCI0)', 'EisaId ("PNP0A08")', 'WordBusNumber', 'QWordMemory', 'Device (COM1)', 'Device (PWRB)', '"ACPI0013"', 'Method (_EVT, 1', 'Name (\\_S5']) {
        assert.ok(dsl.includes(want), `DSDT lacks ${want}`);
      }
    }
    if (signature === 'APIC') assert.equal(dsl.match(/\[Processor Local APIC\]/g)?.length, 4);
    if (signature === 'FACP') assert.match(dsl, /Hardware Reduced \(V5\) : 1/);
    if (signature === 'MCFG') assert.match(dsl, /Base Address : 00000000E0000000/);
  }
});

test('acpiexec loads the tables, and the DSDT answers _S5, the PCI _CRS and the power-button event', { skip: acpica }, () => {
  const { files } = writeTables(2, 6 * GiB);
  const tables = ['DSDT', 'FACP', 'APIC', 'MCFG'].map((s) => files.get(s)!);
  const r = spawnSync('acpiexec', ['-b', 'evaluate \\_S5; evaluate \\_SB.GED._EVT 16; evaluate \\_SB.GED._EVT 17; evaluate \\_SB.PCI0._CRS', ...tables], { encoding: 'utf8', timeout: 30_000 });
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, out);
  assert.doesNotMatch(out, /AE_[A-Z_]+ .*error|Exception/i, out);
  assert.match(out, /\[Integer\] = 0000000000000005/, 'S5 sleep type 5');
  assert.equal(out.match(/Device Notify on \[PWRB\].*Value 0x80/g)?.length, 1, `exactly one notify (for GSI 16):\n${out}`);
  assert.match(out, /Evaluation of \\_SB.PCI0._CRS returned object/);
  assert.match(out, /No outstanding allocations/);
});
