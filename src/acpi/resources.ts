// ACPI resource descriptors (ACPI 6.5 §6.4) for _CRS buffers: what a device decodes or consumes.
import { TypevisorError } from '../base/errors.js';
import { buffer, concat, type Aml } from './aml.js';

/** A resource descriptor's bytes (without the end tag). */
export type Resource = Uint8Array;

function checkRange(what: string, min: number | bigint, max: number | bigint, limit: bigint): void {
  const lo = BigInt(min);
  const hi = BigInt(max);
  if (lo < 0n || hi > limit || lo > hi) throw new TypevisorError('INTERNAL', `${what} range 0x${lo.toString(16)}-0x${hi.toString(16)} is invalid`);
}

function le(value: number | bigint, bytes: number): number[] {
  const v = BigInt(value);
  return Array.from({ length: bytes }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
}

/** I/O port descriptor (§6.4.2.5), 16-bit decode: `length` ports at a fixed `base`. */
export function ioPorts(base: number, length: number): Resource {
  checkRange('I/O', base, base + length - 1, 0xffffn);
  if (length < 1 || length > 255) throw new TypevisorError('INTERNAL', `I/O descriptor length ${length}`);
  return Uint8Array.from([0x47, 0x01, ...le(base, 2), ...le(base, 2), 1, length]);
}

/** IRQ descriptor without flags (§6.4.2.1): an ISA IRQ, edge-triggered, active high. */
export function isaIrq(irq: number): Resource {
  if (!Number.isInteger(irq) || irq < 0 || irq > 15) throw new TypevisorError('INTERNAL', `ISA IRQ ${irq}`);
  return Uint8Array.from([0x22, ...le(1 << irq, 2)]);
}

/**
 * General flags of the address space descriptors for what a host bridge *produces* for its
 * children: producer, positive decode, fixed minimum and maximum.
 */
const PRODUCER_FIXED = 0x0c;
const TYPE = { MEMORY: 0, IO: 1, BUS: 2 } as const;

/** Word Address Space Descriptor (§6.4.3.5.3) for a bus-number range. */
export function busNumbers(min: number, max: number): Resource {
  checkRange('bus number', min, max, 0xffn);
  return Uint8Array.from([0x88, ...le(13, 2), TYPE.BUS, PRODUCER_FIXED, 0, ...le(0, 2), ...le(min, 2), ...le(max, 2), ...le(0, 2), ...le(max - min + 1, 2)]);
}

/** Word Address Space Descriptor for an I/O port window (ISA and non-ISA ranges). */
export function ioWindow(min: number, max: number): Resource {
  checkRange('I/O window', min, max, 0xffffn);
  return Uint8Array.from([0x88, ...le(13, 2), TYPE.IO, PRODUCER_FIXED, 0x03, ...le(0, 2), ...le(min, 2), ...le(max, 2), ...le(0, 2), ...le(max - min + 1, 2)]);
}

/** DWord Address Space Descriptor (§6.4.3.5.2) for a 32-bit MMIO window: read-write, not cacheable. */
export function memoryWindow32(min: number, max: number): Resource {
  checkRange('32-bit memory window', min, max, 0xffffffffn);
  return Uint8Array.from([0x87, ...le(23, 2), TYPE.MEMORY, PRODUCER_FIXED, 0x01, ...le(0, 4), ...le(min, 4), ...le(max, 4), ...le(0, 4), ...le(max - min + 1, 4)]);
}

/** QWord Address Space Descriptor (§6.4.3.5.1) for a 64-bit MMIO window: read-write, not cacheable. */
export function memoryWindow64(min: bigint, max: bigint): Resource {
  checkRange('64-bit memory window', min, max, 0xffffffffffffffffn);
  return Uint8Array.from([0x8a, ...le(43, 2), TYPE.MEMORY, PRODUCER_FIXED, 0x01, ...le(0, 8), ...le(min, 8), ...le(max, 8), ...le(0, 8), ...le(max - min + 1n, 8)]);
}

/** Extended Interrupt Descriptor (§6.4.3.6): one GSI this device consumes. */
export function extendedInterrupt(gsi: number, opts: { edge: boolean; activeLow: boolean }): Resource {
  if (!Number.isInteger(gsi) || gsi < 0 || gsi > 0xffffffff) throw new TypevisorError('INTERNAL', `GSI ${gsi}`);
  const flags = 0x01 | (opts.edge ? 0x02 : 0) | (opts.activeLow ? 0x04 : 0);
  return Uint8Array.from([0x89, ...le(6, 2), flags, 1, ...le(gsi, 4)]);
}

/** A ResourceTemplate: the descriptors, then the end tag (§6.4.2.9; checksum 0 means "not computed"), as a Buffer. */
export function resourceTemplate(resources: readonly Resource[]): Aml {
  return buffer(concat([...resources, Uint8Array.of(0x79, 0x00)]));
}
