// The CMOS real-time clock (Motorola MC146818A) at ports 0x70/0x71: time of day from the host clock.
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
const REG_CENTURY = 0x32;

const B_24H = 0x02;
const B_BINARY = 0x04;
const D_VALID_RAM_AND_TIME = 0x80;

export interface CmosRtcOptions {
  /** The clock (injectable for tests). */
  now?: () => Date;
}

export class CmosRtc implements BusDevice {
  private index = 0;
  private readonly ram = new Uint8Array(128);
  private readonly now: () => Date;

  constructor(opts: CmosRtcOptions = {}) {
    this.now = opts.now ?? ((): Date => new Date());
    this.ram[REG_A] = 0x26; // 32.768 kHz time base, 1024 Hz rate; update-in-progress never set
    this.ram[REG_B] = B_24H; // BCD, 24-hour mode
    this.ram[REG_D] = D_VALID_RAM_AND_TIME;
  }

  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    data[0] = offset === DATA ? this.readRegister(this.index) : 0xff;
  }

  write(offset: number, data: Uint8Array): void {
    const value = data[0] ?? 0;
    if (offset === INDEX) {
      this.index = value & 0x7f; // bit 7 masks NMIs on a PC; nothing to mask here
    } else if (offset === DATA) {
      if (this.index === REG_C || this.index === REG_D) return; // read-only status
      // Time registers are read from the host clock; the guest cannot set the host's time.
      if (this.index <= REG_YEAR || this.index === REG_CENTURY) return;
      this.ram[this.index] = this.index === REG_A ? value & 0x7f : value;
    }
  }

  private readRegister(index: number): number {
    const t = this.now();
    const binary = (this.ram[REG_B]! & B_BINARY) !== 0;
    const enc = (v: number): number => (binary ? v : ((Math.floor(v / 10) << 4) | v % 10));
    switch (index) {
      case REG_SECONDS: return enc(t.getUTCSeconds());
      case REG_MINUTES: return enc(t.getUTCMinutes());
      case REG_HOURS: {
        const h = t.getUTCHours();
        if (this.ram[REG_B]! & B_24H) return enc(h);
        const h12 = h % 12 === 0 ? 12 : h % 12;
        return enc(h12) | (h >= 12 ? 0x80 : 0);
      }
      case REG_WEEKDAY: return enc(t.getUTCDay() + 1);
      case REG_DAY: return enc(t.getUTCDate());
      case REG_MONTH: return enc(t.getUTCMonth() + 1);
      case REG_YEAR: return enc(t.getUTCFullYear() % 100);
      case REG_CENTURY: return enc(Math.floor(t.getUTCFullYear() / 100));
      case REG_C: return 0; // no interrupt flags: we raise no RTC interrupts
      default: return this.ram[index] ?? 0xff;
    }
  }
}
