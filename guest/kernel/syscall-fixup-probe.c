// Exercises pvm-syscall-fixup.patch on any host: does from user mode what nested PVM KVM's
// broken SYSCALL does — jump to entry_SYSCALL_64 with RCX = return address, R11 = RFLAGS —
// and checks the system calls happen and that R11 cannot raise IOPL.
// Usage (in the guest): syscall-fixup-probe <address of entry_SYSCALL_64, hex>
// Build: gcc -Os -static -nostdlib -ffreestanding -fno-stack-protector -o syscall-fixup-probe syscall-fixup-probe.c
// Prints "SYSCALL-FIXUP-OK" and exits 0, or says what failed and exits 1.

static unsigned long entry;

/* The jump, with RFLAGS in R11 as SYSCALL leaves it, plus the extra bits asked for. */
static long jump_syscall(long nr, long a1, long a2, long a3, unsigned long extra_flags) {
  long ret;
  __asm__ volatile(
      "lea 1f(%%rip), %%rcx\n\t"
      "pushfq\n\t"
      "pop %%r11\n\t"
      "or %[extra], %%r11\n\t"
      "jmp *%[entry]\n"
      "1:"
      : "=a"(ret)
      : "a"(nr), "D"(a1), "S"(a2), "d"(a3), [entry] "m"(entry), [extra] "m"(extra_flags)
      : "rcx", "r11", "memory");
  return ret;
}

static long real_syscall(long nr, long a1, long a2, long a3) {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a1), "S"(a2), "d"(a3) : "rcx", "r11", "memory");
  return ret;
}

static unsigned long len(const char *s) {
  unsigned long n = 0;
  while (s[n]) n++;
  return n;
}

static void say(const char *s) { real_syscall(1, 1, (long)s, (long)len(s)); }

__attribute__((noreturn)) static void done(int status) {
  for (;;) real_syscall(60, status, 0, 0);
}

__attribute__((noreturn, used)) void probe_main(long *sp) {
  long argc = sp[0];
  const char *arg = (const char *)sp[2];
  if (argc < 2) { say("usage: syscall-fixup-probe ENTRY_SYSCALL_64_HEX\n"); done(2); }
  for (const char *p = arg; *p; p++) {
    if (p == arg && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) { p++; continue; }
    int d = *p >= '0' && *p <= '9' ? *p - '0' : (*p | 0x20) >= 'a' && (*p | 0x20) <= 'f' ? (*p | 0x20) - 'a' + 10 : -1;
    if (d < 0) { say("bad address\n"); done(2); }
    entry = entry << 4 | (unsigned long)d;
  }
  static const char msg[] = "write through the fix-up\n";
  if (jump_syscall(1, 1, (long)msg, sizeof msg - 1, 0) != sizeof msg - 1) { say("FAIL: write\n"); done(1); }
  if (jump_syscall(39, 0, 0, 0, 0) != real_syscall(39, 0, 0, 0)) { say("FAIL: getpid\n"); done(1); }
  if (jump_syscall(-1, 0, 0, 0, 0) != -38) { say("FAIL: syscall -1 is not -ENOSYS\n"); done(1); }
  /* IOPL 3 in R11 must not survive the return (IRET from ring 0 could load it). */
  jump_syscall(39, 0, 0, 0, 0x3000);
  unsigned long flags;
  __asm__ volatile("pushfq; pop %0" : "=r"(flags));
  if (flags & 0x3000) { say("FAIL: IOPL raised through R11\n"); done(1); }
  say("SYSCALL-FIXUP-OK\n");
  jump_syscall(60, 0, 0, 0, 0); /* exit through the fix-up too */
  done(1);
}

__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall probe_main\n");
