// ACPI system description tables (ACPI 6.5 §5.2): RSDP, XSDT, FADT, MADT, MCFG and the DSDT wrapper.
import { TypevisorError } from '../base/errors.js';

/** OEM identification written into every table. */
export const OEM = { ID: 'TYPVSR', TABLE_ID: 'TYPEVSOR', REVISION: 1, CREATOR_ID: 'TYPV', CREATOR_REVISION: 1 } as const;

const HEADER_SIZE = 36;

/** Generic Address Structure (§5.2.3.2) of a register. */
export interface GenericAddress {
  space: 'memory' | 'io';
  bitWidth: number;
  address: number;
}

function ascii(view: Uint8Array, at: number, text: string, length: number): void {
  for (let i = 0; i < length; i++) view[at + i] = i < text.length ? text.charCodeAt(i) : 0x20;
}

/** The byte that makes `bytes` sum to zero (mod 256), given that the checksum byte itself is 0. */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return (0x100 - sum) & 0xff;
}

/** A table with the standard header (§5.2.6), its length and checksum filled in. */
export function sdt(signature: string, revision: number, body: Uint8Array): Uint8Array {
  if (!/^[A-Z]{4}$/.test(signature)) throw new TypevisorError('INTERNAL', `bad ACPI signature ${signature}`);
  const table = new Uint8Array(HEADER_SIZE + body.length);
  const v = new DataView(table.buffer);
  ascii(table, 0, signature, 4);
  v.setUint32(4, table.length, true);
  table[8] = revision;
  ascii(table, 10, OEM.ID, 6);
  ascii(table, 16, OEM.TABLE_ID, 8);
  v.setUint32(24, OEM.REVISION, true);
  ascii(table, 28, OEM.CREATOR_ID, 4);
  v.setUint32(32, OEM.CREATOR_REVISION, true);
  table.set(body, HEADER_SIZE);
  table[9] = checksum(table);
  return table;
}

function writeGas(v: DataView, at: number, reg: GenericAddress | undefined): void {
  if (!reg) return;
  v.setUint8(at, reg.space === 'io' ? 1 : 0);
  v.setUint8(at + 1, reg.bitWidth);
  v.setUint8(at + 2, 0);
  // Access size: 1 = byte, 2 = word, 3 = dword, 4 = qword.
  v.setUint8(at + 3, Math.max(1, Math.log2(reg.bitWidth / 8) + 1));
  v.setBigUint64(at + 4, BigInt(reg.address), true);
}

/** RSDP (§5.2.5.3), revision 2: points at the XSDT; both checksums filled in. */
export function rsdp(xsdtAddress: number): Uint8Array {
  const t = new Uint8Array(36);
  const v = new DataView(t.buffer);
  ascii(t, 0, 'RSD PTR ', 8);
  ascii(t, 9, OEM.ID, 6);
  t[15] = 2;
  v.setUint32(20, 36, true);
  v.setBigUint64(24, BigInt(xsdtAddress), true);
  t[8] = checksum(t.subarray(0, 20));
  t[32] = checksum(t);
  return t;
}

/** XSDT (§5.2.8): 64-bit addresses of the other tables (not the DSDT, which the FADT points at). */
export function xsdt(tableAddresses: readonly number[]): Uint8Array {
  const body = new Uint8Array(8 * tableAddresses.length);
  const v = new DataView(body.buffer);
  tableAddresses.forEach((a, i) => v.setBigUint64(8 * i, BigInt(a), true));
  return sdt('XSDT', 1, body);
}

/** FADT flags (§5.2.9, table 5.10) and IA-PC boot architecture flags (table 5.11). */
export const FADT_FLAGS = { WBINVD: 1 << 0, PWR_BUTTON: 1 << 4, SLP_BUTTON: 1 << 5, RESET_REG_SUP: 1 << 10, HW_REDUCED_ACPI: 1 << 20 } as const;
export const IAPC_BOOT_ARCH = { LEGACY_DEVICES: 1 << 0, I8042: 1 << 1, VGA_NOT_PRESENT: 1 << 2, MSI_NOT_SUPPORTED: 1 << 3, CMOS_RTC_NOT_PRESENT: 1 << 5 } as const;

export interface FadtOptions {
  dsdtAddress: number;
  /** Hardware-reduced ACPI: sleep control/status registers instead of PM1 blocks, no SCI, no FACS. */
  sleepControl: GenericAddress;
  sleepStatus: GenericAddress;
  reset: GenericAddress;
  resetValue: number;
  iapcBootArch: number;
}

/** FADT (§5.2.9), revision 6.5, 276 bytes: a hardware-reduced platform. */
export function fadt(o: FadtOptions): Uint8Array {
  const body = new Uint8Array(276 - HEADER_SIZE);
  const v = new DataView(body.buffer);
  const at = (offset: number): number => offset - HEADER_SIZE;
  if (o.dsdtAddress <= 0xffffffff) v.setUint32(at(40), o.dsdtAddress, true);
  v.setUint16(at(109), o.iapcBootArch, true);
  // No fixed-hardware power button: the DSDT declares a control-method one (PNP0C0C).
  v.setUint32(at(112), FADT_FLAGS.WBINVD | FADT_FLAGS.PWR_BUTTON | FADT_FLAGS.SLP_BUTTON | FADT_FLAGS.RESET_REG_SUP | FADT_FLAGS.HW_REDUCED_ACPI, true);
  writeGas(v, at(116), o.reset);
  v.setUint8(at(128), o.resetValue);
  v.setUint8(at(131), 5); // FADT minor version: ACPI 6.5
  v.setBigUint64(at(140), BigInt(o.dsdtAddress), true);
  writeGas(v, at(244), o.sleepControl);
  writeGas(v, at(256), o.sleepStatus);
  return sdt('FACP', 6, body);
}

export interface MadtOptions {
  localApicAddress: number;
  /** APIC IDs of the processors, in ACPI processor UID order. */
  apicIds: readonly number[];
  ioApic: { id: number; address: number; gsiBase: number };
  /** ISA IRQ → GSI overrides; flags 0 = conforms to the bus (edge, active high for ISA). */
  overrides: readonly { irq: number; gsi: number; flags: number }[];
}

/** MADT (§5.2.12), revision 5: local APICs, the IOAPIC, ISA overrides, LINT1 as NMI on every CPU. */
export function madt(o: MadtOptions): Uint8Array {
  const entries: number[][] = [];
  const u16 = (x: number): number[] => [x & 0xff, (x >>> 8) & 0xff];
  const u32 = (x: number): number[] => [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff];
  o.apicIds.forEach((id, uid) => {
    if (id > 0xfe || uid > 0xfe) throw new TypevisorError('INTERNAL', `APIC ID ${id} / UID ${uid} does not fit an xAPIC MADT entry`);
    entries.push([0, 8, uid, id, ...u32(1)]);
  });
  entries.push([1, 12, o.ioApic.id, 0, ...u32(o.ioApic.address), ...u32(o.ioApic.gsiBase)]);
  for (const ov of o.overrides) entries.push([2, 10, 0, ov.irq, ...u32(ov.gsi), ...u16(ov.flags)]);
  entries.push([4, 6, 0xff, ...u16(0), 1]);
  const body = Uint8Array.from([...u32(o.localApicAddress), ...u32(0), ...entries.flat()]);
  return sdt('APIC', 5, body);
}

/** MCFG (PCI Firmware spec 3.2 §4.1.2): one ECAM window for a segment and a bus range. */
export function mcfg(o: { base: number; segment: number; startBus: number; endBus: number }): Uint8Array {
  const body = new Uint8Array(8 + 16);
  const v = new DataView(body.buffer);
  v.setBigUint64(8, BigInt(o.base), true);
  v.setUint16(16, o.segment, true);
  v.setUint8(18, o.startBus);
  v.setUint8(19, o.endBus);
  return sdt('MCFG', 1, body);
}

/** DSDT (§5.2.11.1): a header around the AML definition block. Revision 2: integers are 64-bit. */
export function dsdt(aml: Uint8Array): Uint8Array {
  return sdt('DSDT', 2, aml);
}
