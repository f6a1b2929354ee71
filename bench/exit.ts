// bench:exit — PIO exit round trips per second from Typevisor's vCPU loop, beside the same loop in C.
import { assemble } from '../test/helpers/guest-asm.js';
import { runTinyGuest } from '../test/helpers/tiny-guest.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileC, runProgram, tempDir } from '../test/helpers/native.js';
import { median, printResult } from './lib/report.js';

const ITERATIONS = 200_000;
const RUNS = 5;
const ORIGIN = 0x1000;

/** The guest: `n` `out` to an unmapped port (each one exit), then an i8042 reset. */
const guest = (n: number): string => `
  .code16
  mov ecx, ${n}
  mov dx, 0x80
loop:
  out dx, al
  dec ecx
  jnz loop
  mov al, 0xfe
  out 0x64, al
hang:
  hlt
  jmp hang
`;

/** The same VMM loop in C: KVM_RUN, decode the exit, dispatch the port, until the reset. */
const C_VMM = `
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  FILE *f = fopen(argv[1], "rb"); unsigned char img[4096]; size_t n = fread(img, 1, sizeof img, f); fclose(f);
  int kvm = open("/dev/kvm", O_RDWR), vm = ioctl(kvm, KVM_CREATE_VM, 0);
  size_t mem_size = 16 << 20;
  unsigned char *mem = mmap(0, mem_size, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0);
  memcpy(mem + ${ORIGIN}, img, n);
  struct kvm_userspace_memory_region r = { .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (unsigned long)mem };
  ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
  ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000);
  ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  struct kvm_run *run = mmap(0, ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ|PROT_WRITE, MAP_SHARED, vcpu, 0);
  struct kvm_sregs s; ioctl(vcpu, KVM_GET_SREGS, &s);
  s.cs.base = 0; s.cs.selector = 0; s.ds.base = 0; s.ds.selector = 0; s.ss.base = 0; s.ss.selector = 0;
  ioctl(vcpu, KVM_SET_SREGS, &s);
  struct kvm_regs g = { .rip = ${ORIGIN}, .rflags = 2, .rsp = 0x7000 }; ioctl(vcpu, KVM_SET_REGS, &g);
  struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
  long exits = 0; volatile unsigned char sink = 0;
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) { perror("KVM_RUN"); return 1; }
    exits++;
    if (run->exit_reason != KVM_EXIT_IO) { fprintf(stderr, "exit %d\\n", run->exit_reason); return 1; }
    unsigned char *d = (unsigned char *)run + run->io.data_offset;
    if (run->io.port == 0x64 && d[0] == 0xfe) break;
    sink ^= d[0];
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
  printf("%ld %.1f\\n", exits, ns);
  return 0;
}`;

async function main(): Promise<void> {
  const image = assemble(guest(ITERATIONS), ORIGIN);
  const empty = assemble(guest(1), ORIGIN);
  const imgPath = join(tempDir(), 'guest.bin');
  writeFileSync(imgPath, image);
  const cExe = compileC(C_VMM);

  const ours: number[] = [];
  const c: number[] = [];
  const timeRun = async (img: Uint8Array): Promise<{ ns: number; exits: number }> => {
    const t0 = process.hrtime.bigint();
    const r = await runTinyGuest({ image: img, origin: ORIGIN, timeoutMs: 120_000 });
    if (r.exit.reason !== 'reset') throw new Error(`guest ended with ${r.exit.reason}: ${r.exit.detail}`);
    return { ns: Number(process.hrtime.bigint() - t0), exits: r.exits };
  };
  for (let i = 0; i < RUNS; i++) {
    // VM creation, worker start-up and teardown cost the same with one exit: subtract them.
    const full = await timeRun(image);
    const base = await timeRun(empty);
    ours.push((full.ns - base.ns) / (full.exits - base.exits));
    const [exits, cns] = runProgram(cExe, [imgPath]).trim().split(' ').map(Number) as [number, number];
    c.push(cns / exits);
  }
  const oursUs = median(ours) / 1000;
  const cUs = median(c) / 1000;
  console.log(`PIO exit round trip (median of ${RUNS} runs × ${ITERATIONS} exits)`);
  console.log(`  typevisor: ${oursUs.toFixed(2)} µs/exit  (${Math.round(1e6 / oursUs)} exits/s)`);
  console.log(`  C loop:    ${cUs.toFixed(2)} µs/exit  (${Math.round(1e6 / cUs)} exits/s)`);
  console.log(`  ratio typevisor/C: ${(oursUs / cUs).toFixed(3)} (target ≤ 1.05)`);
  printResult({ iterations: ITERATIONS, runs: RUNS, typevisor_us_per_exit: oursUs, c_us_per_exit: cUs, ratio: oursUs / cUs });
}

await main();
