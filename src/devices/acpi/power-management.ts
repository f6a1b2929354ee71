// Hardware-reduced ACPI power management (ACPI 6.5 §4.8.3.7): the sleep control and status
// registers and the reset register the FADT points at, as three one-byte I/O ports.
import type { BusDevice } from '../bus-device.js';

/** Offsets from the device's base port. */
export const ACPI_PM = { SLEEP_CONTROL: 0, SLEEP_STATUS: 1, RESET: 2, PORTS: 3 } as const;

/** Sleep control register fields (§4.8.3.7.1): SLP_TYPx in bits 2–4, SLP_EN in bit 5. */
const SLEEP_TYPE_SHIFT = 2;
const SLEEP_TYPE_MASK = 0x07;
const SLEEP_ENABLE = 0x20;

export interface AcpiPmOptions {
  /** The SLP_TYP value of \_S5 in the DSDT. */
  s5SleepType: number;
  resetValue: number;
  onPowerOff(): void;
  onReset(): void;
}

export class AcpiPowerManagement implements BusDevice {
  constructor(private readonly opts: AcpiPmOptions) {}

  read(_offset: number, data: Uint8Array): void {
    // No wake events ever pend (WAK_STS clear); reset and control read as zero.
    data.fill(0);
  }

  write(offset: number, data: Uint8Array): void {
    const value = data[0] ?? 0;
    if (offset === ACPI_PM.SLEEP_CONTROL) {
      // Only S5 (soft off) is offered; a request to enter any other state is ignored, as the
      // guest found no \_S1–\_S4 objects to ask for them.
      if ((value & SLEEP_ENABLE) !== 0 && ((value >> SLEEP_TYPE_SHIFT) & SLEEP_TYPE_MASK) === this.opts.s5SleepType) {
        this.opts.onPowerOff();
      }
    } else if (offset === ACPI_PM.RESET && value === this.opts.resetValue) {
      this.opts.onReset();
    }
  }
}
