// The interface every port-I/O and MMIO device model implements.

/**
 * A device on the PIO or MMIO bus. `offset` is relative to the device's base address; `data`
 * is 1, 2, 4 or 8 bytes (little endian): `read` fills it, `write` consumes it. Handlers run on
 * the vCPU thread that exited and must never throw on guest-controlled values.
 */
export interface BusDevice {
  read(offset: number, data: Uint8Array): void;
  write(offset: number, data: Uint8Array): void;
}

/** How a device raises a level-triggered interrupt line (ISA IRQ / GSI). */
export interface IrqLine {
  set(level: boolean): void;
}
