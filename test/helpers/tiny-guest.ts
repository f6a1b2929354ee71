// Runs a tiny assembled guest on a real Machine and collects what it printed and how it ended.
import { Machine, type MachineExit } from '../../src/vmm/machine.js';
import { zeroRegs, type Sregs } from '../../src/kvm/structs.js';
import { longModeBootState, writeGdt } from '../../src/arch/x86_64/gdt.js';
import { writeIdentityPageTables } from '../../src/arch/x86_64/page-tables.js';
import { LAYOUT } from '../../src/arch/x86_64/layout.js';
import { filterCpuid } from '../../src/arch/x86_64/cpuid.js';

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

/**
 * Long mode at CPL 0 with Typevisor's boot GDT and identity page tables (the state the 64-bit
 * Linux boot protocol enters with). `userPages` also sets the U/S bit in every table entry so
 * ring-3 code can run on the identity map. CR4.OSFXSR/OSXMMEXCPT/OSXSAVE and XCR0 = x87|SSE let
 * the guest use SSE state instructions.
 */
export function longModeSetup(entry: number, opts: { userPages?: boolean } = {}): (machine: Machine) => void {
  return (machine) => {
    const m = machine.memory;
    writeGdt(m);
    writeIdentityPageTables(m);
    if (opts.userPages) {
      for (let a = LAYOUT.PML4; a < LAYOUT.PD + 4 * 4096; a += 8) {
        const e = m.getU64(a);
        if (e & 1n) m.setU64(a, e | 4n);
      }
    }
    const boot = longModeBootState(entry);
    const vcpu = machine.vcpus[0]!;
    // XCR0 may only enable what the vCPU's CPUID offers, so CPUID comes first.
    vcpu.setCpuid(filterCpuid(machine.kvm.supportedCpuid(), { vcpuIndex: 0, vcpuCount: 1 }));
    const s = vcpu.getSregs();
    vcpu.setSregs({ ...s, ...boot.sregs, cr4: boot.sregs.cr4 | 0x600n | 0x40000n });
    vcpu.setXcrs([{ xcr: 0, value: 3n }]);
    const regs = zeroRegs();
    Object.assign(regs, boot.regs);
    regs.rsp = 0x80000n;
    vcpu.setRegs(regs);
  };
}
