// Detection of what kind of KVM this host has: hardware-accelerated, or nested "PVM" KVM.
import { existsSync } from 'node:fs';

/**
 * True when /dev/kvm is provided by kvm_pvm (Pagetable-based Virtual Machine): guest kernel code
 * then runs in KVM's instruction emulator, which needs the VMM's assist and a guest kept off
 * instructions it cannot emulate. See docs/architecture.md ("Hosts whose KVM cannot do everything").
 */
export function isPvmHost(sysModuleDir = '/sys/module'): boolean {
  if (process.env['TYPEVISOR_HOST_KVM'] === 'pvm') return true;
  if (process.env['TYPEVISOR_HOST_KVM'] === 'hardware') return false;
  return existsSync(`${sysModuleDir}/kvm_pvm`);
}
