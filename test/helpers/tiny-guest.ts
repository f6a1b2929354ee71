// Runs a tiny assembled guest on a real Machine and collects what it printed and how it ended.
import { Machine, type MachineExit } from '../../src/vmm/machine.js';
import { zeroRegs, type Sregs } from '../../src/kvm/structs.js';

export interface TinyGuestResult {
  exit: MachineExit;
  output: string;
  assists: string[];
  exits: number;
}

export interface TinyGuestOptions {
  /** The guest image and where it is loaded; execution starts at `entry` (default: origin). */
  image: Uint8Array;
  origin: number;
  entry?: number;
  memoryBytes?: number;
  assist?: boolean;
  /** Adjusts the vCPU's state before it runs (default: real mode, CS base 0). */
  setup?: (machine: Machine) => void;
  timeoutMs?: number;
}

/** Real mode with flat 64 KiB segments based at 0: the guest's code runs at `entry`. */
export function realModeSregs(s: Sregs): Sregs {
  for (const seg of [s.cs, s.ds, s.es, s.fs, s.gs, s.ss]) {
    seg.base = 0n;
    seg.selector = 0;
  }
  return s;
}

export async function runTinyGuest(opts: TinyGuestOptions): Promise<TinyGuestResult> {
  const machine = new Machine({
    regions: [{ gpa: 0, size: opts.memoryBytes ?? 16 * 2 ** 20 }], vcpus: 1, assist: opts.assist ?? true,
  });
  const chunks: Uint8Array[] = [];
  const assists: string[] = [];
  try {
    machine.memory.write(opts.origin, opts.image);
    const vcpu = machine.vcpus[0]!;
    if (opts.setup) {
      opts.setup(machine);
    } else {
      vcpu.setSregs(realModeSregs(vcpu.getSregs()));
      const regs = zeroRegs();
      regs.rip = BigInt(opts.entry ?? opts.origin);
      regs.rflags = 2n;
      regs.rsp = 0x7000n;
      vcpu.setRegs(regs);
    }
    const done = machine.start({ onOutput: (b) => chunks.push(b), onAssist: (k) => assists.push(k) });
    const timeout = setTimeout(() => machine.stop(), opts.timeoutMs ?? 20_000);
    const exit = await done;
    clearTimeout(timeout);
    return { exit, output: Buffer.concat(chunks).toString('latin1'), assists, exits: machine.exitCount };
  } finally {
    await machine.close();
  }
}
