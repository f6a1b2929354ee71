// A human-readable dump of a vCPU (registers, modes, the bytes at RIP) for crash reports.
import type { VcpuFd } from '../kvm/kvm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { translate } from '../arch/x86_64/assist/page-walk.js';

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

export function describeVcpu(vcpu: VcpuFd, memory: GuestMemory): string {
  try {
    const r = vcpu.getRegs();
    const s = vcpu.getSregs();
    const gprs = (['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const)
      .map((n) => `${n}=${hex(r[n])}`).join(' ');
    const lines = [
      `rip=${hex(r.rip)} rflags=${hex(r.rflags)} cs=${hex(s.cs.selector)} (dpl ${s.cs.dpl}, ${s.cs.l ? '64-bit' : s.cs.db ? '32-bit' : '16-bit'})`,
      gprs,
      `cr0=${hex(s.cr0)} cr2=${hex(s.cr2)} cr3=${hex(s.cr3)} cr4=${hex(s.cr4)} efer=${hex(s.efer)}`,
    ];
    const linear = s.cs.base + r.rip;
    const t = translate(memory, linear, { cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer });
    if ('gpa' in t && memory.contains(t.gpa, 1)) {
      const n = Math.min(16, 4096 - (t.gpa % 4096));
      const bytes = memory.read(t.gpa, n);
      lines.push(`bytes at rip: ${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ')}`);
    } else {
      lines.push('bytes at rip: (not mapped)');
    }
    return lines.join('\n');
  } catch (e) {
    return `(vCPU state unavailable: ${e instanceof Error ? e.message : String(e)})`;
  }
}
