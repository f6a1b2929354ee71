// The ACPI tables of Typevisor's x86-64 machine: what a stock kernel needs to find its CPUs, the
// IOAPIC, the PCI host bridge, the legacy devices, power-off/reset registers and the power button.
import { TypevisorError } from '../../base/errors.js';
import * as aml from '../../acpi/aml.js';
import * as res from '../../acpi/resources.js';
import { dsdt, fadt, madt, mcfg, rsdp, xsdt, IAPC_BOOT_ARCH } from '../../acpi/tables.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LAYOUT, PLATFORM, pciMmio64Window } from './layout.js';

export interface AcpiMachine {
  vcpus: number;
  memoryBytes: number;
}

/** The DSDT's AML: the PCI host bridge, COM1, the RTC, the i8042, the power button and its GED, \_S5. */
export function machineDsdtAml(m: AcpiMachine): Uint8Array {
  const mmio64 = pciMmio64Window(m.memoryBytes);
  const pciHostBridge = aml.device('PCI0', [
    aml.name('_HID', aml.eisaId('PNP0A08')),
    aml.name('_CID', aml.eisaId('PNP0A03')),
    aml.name('_ADR', aml.integer(0)),
    aml.name('_SEG', aml.integer(0)),
    aml.name('_UID', aml.integer(0)),
    aml.name('_BBN', aml.integer(0)),
    aml.name('_CRS', res.resourceTemplate([
      res.busNumbers(0, 0),
      // All ports but the configuration mechanism's 0xCF8-0xCFF.
      res.ioWindow(0x0000, 0x0cf7),
      res.ioWindow(0x0d00, 0xffff),
      res.memoryWindow32(LAYOUT.PCI_MMIO32, LAYOUT.PCI_ECAM - 1),
      res.memoryWindow64(BigInt(mmio64.base), BigInt(mmio64.base + mmio64.size - 1)),
    ])),
  ]);
  const legacy = (path: string, hid: string, uid: number, resources: res.Resource[]): aml.Aml => aml.device(path, [
    aml.name('_HID', aml.eisaId(hid)),
    aml.name('_UID', aml.integer(uid)),
    aml.name('_CRS', res.resourceTemplate(resources)),
  ]);
  const powerButton = aml.device('PWRB', [
    aml.name('_HID', aml.eisaId('PNP0C0C')),
    aml.name('_UID', aml.integer(0)),
  ]);
  // Hardware-reduced ACPI has no SCI: events arrive through a Generic Event Device, whose _EVT
  // the kernel runs with the GSI that fired. Ours has one, and it means "power button pressed".
  const ged = aml.device('GED_', [
    aml.name('_HID', aml.string('ACPI0013')),
    aml.name('_UID', aml.integer(0)),
    aml.name('_CRS', res.resourceTemplate([res.extendedInterrupt(PLATFORM.GED_GSI, { edge: true, activeLow: false })])),
    aml.method('_EVT', 1, [
      aml.ifThen(aml.lEqual(aml.arg(0), aml.integer(PLATFORM.GED_GSI)), [aml.notify('PWRB', aml.integer(0x80))]),
    ]),
  ]);
  return aml.concat([
    aml.scope('\\_SB_', [
      pciHostBridge,
      legacy('COM1', 'PNP0501', 1, [res.ioPorts(0x3f8, 8), res.isaIrq(4)]),
      legacy('RTC_', 'PNP0B00', 0, [res.ioPorts(0x70, 2), res.isaIrq(8)]),
      legacy('KBC_', 'PNP0303', 0, [res.ioPorts(0x60, 1), res.ioPorts(0x64, 1), res.isaIrq(1)]),
      powerButton,
      ged,
    ]),
    aml.name('\\_S5_', aml.packageOf([aml.integer(PLATFORM.S5_SLEEP_TYPE), aml.integer(0)])),
  ]);
}

export interface AcpiTables {
  /** Guest-physical address of the RSDP (for PVH's start_info and the zero page). */
  rsdpAddress: number;
  /** Each table by signature and where it went, for tests and diagnostics. */
  tables: { signature: string; address: number; bytes: Uint8Array }[];
}

/** Builds the tables and lays them out from LAYOUT.ACPI_TABLES: RSDP, XSDT, FADT, MADT, MCFG, DSDT. */
export function buildAcpiTables(m: AcpiMachine): AcpiTables {
  if (m.vcpus < 1 || m.vcpus > PLATFORM.MAX_VCPUS) {
    throw new TypevisorError('INVALID_ARGUMENT', `${m.vcpus} vCPUs cannot be described in an xAPIC MADT (1–${PLATFORM.MAX_VCPUS})`);
  }
  const align = (x: number): number => Math.ceil(x / 16) * 16;
  const RSDP_SIZE = 36;
  const dsdtBytes = dsdt(machineDsdtAml(m));
  const io8 = (address: number) => ({ space: 'io' as const, bitWidth: 8, address });
  // Addresses are known before contents except for the XSDT, whose size depends only on the count.
  const xsdtAddress = align(LAYOUT.ACPI_TABLES + RSDP_SIZE);
  const xsdtSize = 36 + 8 * 3;
  const fadtAddress = align(xsdtAddress + xsdtSize);
  const dsdtAddress = align(fadtAddress + 276);
  const fadtBytes = fadt({
    dsdtAddress,
    sleepControl: io8(PLATFORM.ACPI_SLEEP_CONTROL_PORT),
    sleepStatus: io8(PLATFORM.ACPI_SLEEP_STATUS_PORT),
    reset: io8(PLATFORM.ACPI_RESET_PORT),
    resetValue: PLATFORM.ACPI_RESET_VALUE,
    iapcBootArch: IAPC_BOOT_ARCH.I8042 | IAPC_BOOT_ARCH.VGA_NOT_PRESENT,
  });
  const madtAddress = align(dsdtAddress + dsdtBytes.length);
  const madtBytes = madt({
    localApicAddress: LAYOUT.LAPIC,
    apicIds: Array.from({ length: m.vcpus }, (_, i) => i),
    ioApic: { id: 0, address: LAYOUT.IOAPIC, gsiBase: 0 },
    // The PIT's IRQ 0 is wired to IOAPIC pin 2 on a PC (and in KVM's in-kernel IOAPIC).
    overrides: [{ irq: 0, gsi: 2, flags: 0 }],
  });
  const mcfgAddress = align(madtAddress + madtBytes.length);
  const mcfgBytes = mcfg({ base: LAYOUT.PCI_ECAM, segment: 0, startBus: 0, endBus: LAYOUT.PCI_ECAM_SIZE / 2 ** 20 - 1 });
  const xsdtBytes = xsdt([fadtAddress, madtAddress, mcfgAddress]);
  if (xsdtBytes.length !== xsdtSize) throw new TypevisorError('INTERNAL', 'XSDT size mismatch');
  const end = mcfgAddress + mcfgBytes.length;
  if (end > LAYOUT.ACPI_TABLES_END) throw new TypevisorError('INTERNAL', `ACPI tables overflow their area (end 0x${end.toString(16)})`);
  return {
    rsdpAddress: LAYOUT.ACPI_TABLES,
    tables: [
      { signature: 'RSDP', address: LAYOUT.ACPI_TABLES, bytes: rsdp(xsdtAddress) },
      { signature: 'XSDT', address: xsdtAddress, bytes: xsdtBytes },
      { signature: 'FACP', address: fadtAddress, bytes: fadtBytes },
      { signature: 'DSDT', address: dsdtAddress, bytes: dsdtBytes },
      { signature: 'APIC', address: madtAddress, bytes: madtBytes },
      { signature: 'MCFG', address: mcfgAddress, bytes: mcfgBytes },
    ],
  };
}

/** Writes the tables into guest memory; returns the RSDP's address. */
export function writeAcpiTables(memory: GuestMemory, m: AcpiMachine): number {
  const built = buildAcpiTables(m);
  for (const t of built.tables) memory.write(t.address, t.bytes);
  return built.rsdpAddress;
}
