// The PC legacy devices every Typevisor VM has, on the port-I/O bus of the vCPU thread that runs them.
import { Bus } from '../devices/bus/bus.js';
import { Serial8250 } from '../devices/legacy/serial8250.js';
import { I8042 } from '../devices/legacy/i8042.js';
import { CmosRtc } from '../devices/legacy/cmos-rtc.js';
import { AcpiPowerManagement, ACPI_PM } from '../devices/acpi/power-management.js';
import type { BusDevice } from '../devices/bus-device.js';
import { LAYOUT, PLATFORM } from '../arch/x86_64/layout.js';
import { PciRootComplex, createPciRootState, hostBridgeConfig, type PciRootState } from '../devices/pci/root-complex.js';
import { virtioBarDevice, type VirtioPciWiring } from '../devices/virtio/pci-bar.js';
import { BAR_LAYOUT } from '../devices/virtio/pci-device.js';

export const COM1_PORT = 0x3f8;
export const COM1_IRQ = 4;
/** QEMU/Bochs debug console port: a byte written here goes to the console (handy for tiny guests). */
export const DEBUGCON_PORT = 0xe9;

/** State of the legacy devices, shared by every vCPU thread (any vCPU may touch any port). */
export interface LegacyDeviceState {
  serial: SharedArrayBuffer;
  i8042: SharedArrayBuffer;
  rtc: SharedArrayBuffer;
  /** PCI bus 0: the config address latch and each function's configuration space. */
  pci: PciRootState;
  /** The virtio-pci functions (slots 1, 2, …): their BARs are served on the vCPU threads. */
  virtio: VirtioPciWiring[];
}

export function createLegacyDeviceState(): LegacyDeviceState {
  return {
    serial: Serial8250.createState(), i8042: I8042.createState(), rtc: CmosRtc.createState(),
    pci: createPciRootState([hostBridgeConfig().state]),
    virtio: [],
  };
}

export interface LegacyDeviceOptions {
  state: LegacyDeviceState;
  onOutput: (byte: number) => void;
  irqLine: (irq: number, level: boolean) => void;
  onReset: (how: string) => void;
  onPowerOff: () => void;
}

/** Builds the PIO bus (COM1, i8042, CMOS RTC, ACPI power management, PCI config ports, debug console) and the MMIO bus (ECAM). */
export function createLegacyDevices(opts: LegacyDeviceOptions): { pio: Bus; mmio: Bus } {
  const pio = new Bus();
  const serial = new Serial8250(opts.state.serial, {
    onOutput: opts.onOutput,
    irq: { set: (level) => opts.irqLine(COM1_IRQ, level) },
  });
  pio.insert(COM1_PORT, 8, serial);
  pio.insert(0x60, 5, new I8042({ onReset: () => opts.onReset('i8042'), state: opts.state.i8042 }));
  pio.insert(0x70, 2, new CmosRtc({ state: opts.state.rtc }));
  pio.insert(PLATFORM.ACPI_SLEEP_CONTROL_PORT, ACPI_PM.PORTS, new AcpiPowerManagement({
    s5SleepType: PLATFORM.S5_SLEEP_TYPE,
    resetValue: PLATFORM.ACPI_RESET_VALUE,
    onPowerOff: opts.onPowerOff,
    onReset: () => opts.onReset('ACPI reset register'),
  }));
  const debugcon: BusDevice = {
    read: (_offset, data) => data.fill(DEBUGCON_PORT),
    write: (_offset, data) => opts.onOutput(data[0]!),
  };
  pio.insert(DEBUGCON_PORT, 1, debugcon);
  const pci = new PciRootComplex(opts.state.pci);
  pio.insert(0xcf8, 8, pci.ports);
  const mmio = new Bus();
  mmio.insert(LAYOUT.PCI_ECAM, LAYOUT.PCI_ECAM_SIZE, pci.ecam);
  // BARs stay where we placed them (Linux keeps firmware-assigned BARs inside the bridge window).
  for (const w of opts.state.virtio) mmio.insert(w.state.barAddress, BAR_LAYOUT.SIZE, virtioBarDevice(w));
  return { pio, mmio };
}
