// The AML encoder against known encodings: hand-checked bytes, and where Debian's acpica-tools are
// installed, the bytes ACPICA's own compiler (iasl) produces for the same ASL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as aml from '../../src/acpi/aml.js';
import { tempDir } from '../helpers/native.js';
import { hasAcpicaTools } from '../helpers/acpica.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('pkgLength: one byte up to 63, then 2-4 bytes with the low nibble in the lead byte', () => {
  assert.equal(hex(aml.pkgLength(0)), '01');
  assert.equal(hex(aml.pkgLength(62)), '3f');
  // 63 body bytes + 2 length bytes = 65 = 0x41: lead 0x41 (one more byte, nibble 1), then 0x04.
  assert.equal(hex(aml.pkgLength(63)), '4104');
  assert.equal(hex(aml.pkgLength(0xffd)), '4fff');
  assert.equal(hex(aml.pkgLength(0xffe)), '810001');
  assert.equal(hex(aml.pkgLength(0xffffc)), '8fffff');
  assert.equal(hex(aml.pkgLength(0xffffd)), 'c1000001');
  assert.throws(() => aml.pkgLength(2 ** 28));
});

test('pkgLength round-trips through a decoder for every size class', () => {
  for (const body of [0, 1, 62, 63, 64, 100, 4093, 4094, 4095, 70000, 1048572, 1048573, 2 ** 27]) {
    const enc = aml.pkgLength(body);
    const lead = enc[0]!;
    const extra = lead >> 6;
    let value = extra === 0 ? lead & 0x3f : lead & 0x0f;
    for (let i = 0; i < extra; i++) value |= enc[1 + i]! << (4 + 8 * i);
    assert.equal(enc.length, extra + 1);
    assert.equal(value, body + enc.length, `body ${body}`);
  }
});

test('name strings: segments padded with _, root and parent prefixes, dual and multi names', () => {
  assert.equal(Buffer.from(aml.nameString('_HID')).toString('latin1'), '_HID');
  assert.equal(Buffer.from(aml.nameString('RTC')).toString('latin1'), 'RTC_');
  assert.equal(hex(aml.nameString('\\_SB')), hex(Buffer.from('\\_SB_', 'latin1')));
  assert.equal(hex(aml.nameString('^^PWRB')), '5e5e' + hex(Buffer.from('PWRB', 'latin1')));
  assert.equal(hex(aml.nameString('\\_SB.PCI0')), '5c2e' + hex(Buffer.from('_SB_PCI0', 'latin1')));
  assert.equal(hex(aml.nameString('\\_SB.PCI0.S00')), '5c2f03' + hex(Buffer.from('_SB_PCI0S00_', 'latin1')));
  assert.equal(hex(aml.nameString('\\')), '5c00');
  for (const bad of ['pwrb', 'TOOLONG', '1ABC', 'A.B-C', '_SB..X']) assert.throws(() => aml.nameString(bad), bad);
});

test('integers take their shortest encoding', () => {
  assert.equal(hex(aml.integer(0)), '00');
  assert.equal(hex(aml.integer(1)), '01');
  assert.equal(hex(aml.integer(2)), '0a02');
  assert.equal(hex(aml.integer(0x100)), '0b0001');
  assert.equal(hex(aml.integer(0x10000)), '0c00000100');
  assert.equal(hex(aml.integer(0x123456789an)), '0e9a78563412000000');
  assert.throws(() => aml.integer(-1));
  assert.throws(() => aml.integer(2n ** 64n));
});

test('EISA IDs compress like ASL EisaId()', () => {
  assert.equal(hex(aml.eisaId('PNP0A08')), '0c41d00a08');
  assert.equal(hex(aml.eisaId('PNP0C0C')), '0c41d00c0c');
  assert.throws(() => aml.eisaId('pnp0a08'));
});

/** Our encoding of the ASL below, term by term. */
function encodedSample(): Uint8Array {
  return aml.concat([
    aml.scope('\\_SB', [
      aml.device('PWRB', [aml.name('_HID', aml.eisaId('PNP0C0C')), aml.name('_UID', aml.integer(0))]),
      aml.device('GED', [
        aml.name('_HID', aml.string('ACPI0013')),
        aml.method('_EVT', 1, [aml.ifThen(aml.lEqual(aml.arg(0), aml.integer(0x10)), [aml.notify('PWRB', aml.integer(0x80))])]),
      ]),
    ]),
    aml.name('\\_S5', aml.packageOf([aml.integer(5), aml.integer(0)])),
    aml.name('BIG', aml.integer(0x123456789an)),
  ]);
}

const SAMPLE_ASL = `DefinitionBlock ("", "SSDT", 2, "TYPVSR", "TYPEVSOR", 1)
{
  Scope (\\_SB) {
    Device (PWRB) { Name (_HID, EisaId ("PNP0C0C")) Name (_UID, Zero) }
    Device (GED) {
      Name (_HID, "ACPI0013")
      Method (_EVT, 1) { If (Arg0 == 0x10) { Notify (PWRB, 0x80) } }
    }
  }
  Name (\\_S5, Package () { 5, Zero })
  Name (BIG, 0x123456789A)
}
`;

// What iasl 20200925 (Debian bookworm's acpica-tools) emits for SAMPLE_ASL after the 36-byte header.
const SAMPLE_AML_HEX =
  '1048045c5f53425f5b82155057524208' + '5f4849440c41d00c0c085f5549440' + '05b822847' +
  '45445f085f4849440d414350493030313300' + '14135f45565401a00c93680a10865057524' + '20a80' +
  '085c5f53355f1205020a0500' + '084249475f0e9a78563412000000';

test('devices, methods, packages and big integers encode as iasl compiles them (known bytes)', () => {
  assert.equal(hex(encodedSample()), SAMPLE_AML_HEX);
});

test('the same ASL compiled by iasl at test time gives our bytes', { skip: hasAcpicaTools() ? false : 'SKIPPED: iasl (Debian acpica-tools) is not installed' }, () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'sample.asl'), SAMPLE_ASL);
  execFileSync('iasl', ['-p', join(dir, 'sample'), join(dir, 'sample.asl')], { stdio: 'pipe' });
  const compiled = readFileSync(join(dir, 'sample.aml')).subarray(36);
  assert.equal(hex(encodedSample()), hex(compiled));
});

test('buffers carry their size; methods reject impossible argument counts', () => {
  assert.equal(hex(aml.buffer(Uint8Array.of(0x79, 0))), '11050a027900');
  assert.throws(() => aml.method('_X', 8, []));
  assert.throws(() => aml.arg(7));
  assert.equal(hex(aml.returnOf(aml.local(0))), 'a460');
});
