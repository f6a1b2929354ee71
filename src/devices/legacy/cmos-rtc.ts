// The CMOS real-time clock (Motorola MC146818A datasheet) at ports 0x70/0x71: time of day from the host clock, 128 bytes of CMOS.
import type { BusDevice } from '../bus-device.js';

const INDEX = 0;
const DATA = 1;

const REG_SECONDS = 0x00;
const REG_MINUTES = 0x02;
const REG_HOURS = 0x04;
const REG_WEEKDAY = 0x06;
const REG_DAY = 0x07;
const REG_MONTH = 0x08;
const REG_YEAR = 0x09;
const REG_A = 0x0a;
const REG_B = 0x0b;
const REG_C = 0x0c;
const REG_D = 0x0d;
const REG_CENTURY = 0x32; // where the ACPI FADT's century field points

const A_UIP = 0x80;
const A_DIVIDER_32K_1024HZ = 0x26;
const B_24H = 0x02;
const B_BINARY = 0x04;
const HOUR_PM = 0x80;
const D_VALID_RAM_AND_TIME = 0x80;

/**
 * The chip raises UIP 244 µs before each once-a-second update and holds it through the ≤1984 µs
 * update; our registers change at the instant the host second turns, so UIP covers the last 2 ms
 * before it. A guest that sees UIP clear then has ≥2 ms to read a consistent time (older Linux
 * checks UIP once, then reads); newer Linux also re-reads the seconds to catch a rollover.
 */
const UIP_WINDOW_MS = 2;

const RAM_BYTES = 128;
const INDEX_SLOT = RAM_BYTES; // the selected register, after the RAM in the state buffer

export interface CmosRtcOptions {
  /** The clock (injectable for tests); the host's by default. Times are reported in UTC. */
  now?: () => Date;
  /**
   * State shared by every vCPU thread's CmosRtc (from `CmosRtc.createState()`); a private one when
   * absent. Linux selects and reads a register under rtc_lock, so no host-side lock is needed.
   */
  state?: SharedArrayBuffer;
}

/**
 * Time registers always read the host clock: guest writes to them are ignored (a guest cannot set
 * the host's time), as are the alarm and periodic interrupts (no IRQ 8 is wired; register C reads 0).
 * Everything else is plain CMOS RAM the guest may use as scratch.
 */
export class CmosRtc implements BusDevice {
  private readonly ram: Uint8Array;
  private readonly now: () => Date;

  /** Fresh CMOS contents: the oscillator running, BCD and 24-hour mode, battery good. */
  static createState(): SharedArrayBuffer {
    const sab = new SharedArrayBuffer(RAM_BYTES + 1);
    const ram = new Uint8Array(sab);
    ram[REG_A] = A_DIVIDER_32K_1024HZ;
    ram[REG_B] = B_24H;
    ram[REG_D] = D_VALID_RAM_AND_TIME;
    return sab;
  }

  constructor(opts: CmosRtcOptions = {}) {
    this.now = opts.now ?? ((): Date => new Date());
    this.ram = new Uint8Array(opts.state ?? CmosRtc.createState(), 0, RAM_BYTES + 1);
  }

  read(offset: number, data: Uint8Array): void {
    // Port 0x70 is write-only on a PC: it reads as an open bus.
    const value = offset === DATA ? this.readRegister(this.ram[INDEX_SLOT]!) : 0xff;
    data.fill(0);
    data[0] = value;
  }

  write(offset: number, data: Uint8Array): void {
    const value = data[0] ?? 0;
    if (offset === INDEX) {
      this.ram[INDEX_SLOT] = value & 0x7f; // bit 7 masks NMIs on a PC; there is nothing to mask here
    } else if (offset === DATA) {
      this.writeRegister(this.ram[INDEX_SLOT]!, value);
    }
  }

  private writeRegister(index: number, value: number): void {
    switch (index) {
      case REG_SECONDS: case REG_MINUTES: case REG_HOURS: case REG_WEEKDAY:
      case REG_DAY: case REG_MONTH: case REG_YEAR: case REG_CENTURY:
      case REG_C: case REG_D:
        return; // the host clock's, or read-only status
      case REG_A:
        this.ram[REG_A] = value & ~A_UIP; // UIP is read-only
        return;
      default:
        this.ram[index] = value;
    }
  }

  private readRegister(index: number): number {
    const ram = this.ram;
    const b = ram[REG_B]!;
    const binary = (b & B_BINARY) !== 0;
    const enc = (v: number): number => (binary ? v : ((Math.floor(v / 10) << 4) | v % 10));
    switch (index) {
      case REG_SECONDS: return enc(this.now().getUTCSeconds());
      case REG_MINUTES: return enc(this.now().getUTCMinutes());
      case REG_HOURS: {
        const h = this.now().getUTCHours();
        if (b & B_24H) return enc(h);
        const h12 = h % 12 === 0 ? 12 : h % 12;
        return enc(h12) | (h >= 12 ? HOUR_PM : 0);
      }
      case REG_WEEKDAY: return enc(this.now().getUTCDay() + 1); // 1 = Sunday
      case REG_DAY: return enc(this.now().getUTCDate());
      case REG_MONTH: return enc(this.now().getUTCMonth() + 1);
      case REG_YEAR: return enc(this.now().getUTCFullYear() % 100);
      case REG_CENTURY: return enc(Math.floor(this.now().getUTCFullYear() / 100) % 100);
      case REG_A: {
        const updating = this.now().getUTCMilliseconds() >= 1000 - UIP_WINDOW_MS;
        return ram[REG_A]! | (updating ? A_UIP : 0);
      }
      case REG_C: return 0; // no interrupt flags: no RTC interrupts are raised
      default: return ram[index]!;
    }
  }
}
