// The guest kernel command line Typevisor passes: its defaults, PVM-host additions, the user's part.

/**
 * What every guest gets: console on COM1, no waiting on a panic. Power-off and reset go through
 * the ACPI registers of our FADT (Linux falls back to the i8042 for a reset by itself).
 */
const DEFAULTS = [
  'console=ttyS0',
  'panic=-1',
  'i8042.noaux',
  'i8042.nomux',
  'i8042.dumbkbd',
];

/**
 * On nested PVM KVM the guest kernel runs in KVM's instruction emulator, which lacks these
 * instructions (../shared/research/baseline.md §6): keep Linux off them. CPUID cannot hide XSAVE
 * there, the command line can. `nowatchdog`: emulated time trips the soft-lockup detector.
 */
export const PVM_ADDITIONS = [
  'noxsave',
  'clearcpuid=cx16,popcnt,avx,avx2,avx512f,fsgsbase,smap,invpcid,pcid,rdtscp,rdrand,rdseed,movbe,aes,pclmulqdq,sha_ni',
  'mitigations=off',
  'nowatchdog',
];

export function guestCommandLine(opts: { user?: string | undefined; pvm: boolean }): string {
  const parts = [...DEFAULTS, ...(opts.pvm ? PVM_ADDITIONS : [])];
  if (opts.user && opts.user.trim() !== '') parts.push(opts.user.trim());
  return parts.join(' ');
}
