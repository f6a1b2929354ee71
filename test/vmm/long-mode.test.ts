// Integration: tiny long-mode guests on real KVM — exceptions, the instruction assist, ring-3 syscall, triple fault.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kvmSkip } from '../helpers/kvm.js';
import { assemble } from '../helpers/guest-asm.js';
import { longModeSetup, runTinyGuest } from '../helpers/tiny-guest.js';
import { isPvmHost } from '../../src/kvm/host-kind.js';

const ORIGIN = 0x100000;
const pvm = isPvmHost();

/** Shared guest pieces: print a character on the debug console, install an interrupt gate. */
const PRELUDE = `
  .code64
  .macro PUTC c
    mov al, \\c
    out 0xe9, al
  .endm
  .macro GATE vector, handler
    lea rax, [rip + \\handler]
    lea rdi, [rip + idt + \\vector * 16]
    mov word ptr [rdi], ax
    mov word ptr [rdi + 2], 0x10
    mov word ptr [rdi + 4], 0x8e00
    shr rax, 16
    mov word ptr [rdi + 6], ax
    shr rax, 16
    mov dword ptr [rdi + 8], eax
    mov dword ptr [rdi + 12], 0
  .endm
`;
const RESET = 'mov al, 0xfe\n out 0x64, al\n 9: hlt\n jmp 9b';

test('int3, ud2, fwait, ldmxcsr/stmxcsr and xsave/xrstor all complete (assisted where KVM cannot)', { skip: kvmSkip }, async () => {
  const image = assemble(`${PRELUDE}
    start:
      GATE 3, bp_handler
      GATE 6, ud_handler
      GATE 13, gp_handler
      lidt [rip + idt_desc]
      PUTC 'a'
      int3
      PUTC 'b'
      ud2
      PUTC 'c'
      fwait
      PUTC 'd'
      ldmxcsr [rip + mx_in]
      stmxcsr [rip + mx_out]
      mov eax, dword ptr [rip + mx_out]
      cmp eax, 0x9f80
      jne fail
      PUTC 'e'
      mov eax, 3
      xor edx, edx
      xsave [rip + area]
      mov rax, qword ptr [rip + area + 512]
      and rax, 2
      mov dword ptr [rip + area + 24], 0x1fa0      # change MXCSR in the saved image
      or qword ptr [rip + area + 512], 2
      mov eax, 3
      xor edx, edx
      xrstor [rip + area]
      stmxcsr [rip + mx_out]
      cmp dword ptr [rip + mx_out], 0x1fa0
      jne fail
      PUTC 'f'
      ${RESET}
    fail:
      PUTC 'X'
      ${RESET}
    bp_handler:
      PUTC 'B'
      iretq
    ud_handler:
      PUTC 'U'
      add qword ptr [rsp], 2        # step over the ud2
      iretq
    gp_handler:
      PUTC 'G'
      ${RESET}
    .balign 16
    idt: .fill 32 * 16, 1, 0
    idt_desc: .word 32 * 16 - 1
              .quad idt
    mx_in: .long 0x9f80
    mx_out: .long 0
    .balign 64
    area: .fill 1024, 1, 0
  `, ORIGIN);
  const r = await runTinyGuest({ image, origin: ORIGIN, setup: longModeSetup(ORIGIN), timeoutMs: 30_000 });
  console.log(`assisted on this host: ${JSON.stringify(r.assists)}`);
  assert.equal(r.output, 'aBbUcdef');
  assert.equal(r.exit.reason, 'reset');
  if (pvm) {
    // This host's emulator cannot execute int3 or fwait itself: the assist must have done it.
    assert.ok(r.assists.includes('int3') && r.assists.includes('fwait'), `assists: ${r.assists.join(',')}`);
  }
});

test('a guest that triple-faults ends as a crash with its registers in the report', { skip: kvmSkip }, async () => {
  const image = assemble(`${PRELUDE}
    start:
      lidt [rip + idt_desc]
      PUTC 't'
      mov rax, 0x8000000000000000      # non-canonical: #GP with no IDT → #DF → shutdown
      mov byte ptr [rax], 1
      ${RESET}
    idt_desc: .word 0
              .quad 0
  `, ORIGIN);
  const r = await runTinyGuest({ image, origin: ORIGIN, setup: longModeSetup(ORIGIN) });
  assert.equal(r.output, 't');
  assert.equal(r.exit.reason, 'crash');
  assert.match(r.exit.detail, /triple fault/);
  assert.match(r.exit.detail, /rip=0x1/);
});

test('an instruction neither KVM nor the assist can complete ends the VM with its bytes named', { skip: kvmSkip }, async () => {
  // An SSE arithmetic instruction: KVM's emulator lacks it and the assist does not interpret SSE arithmetic.
  const image = assemble(`${PRELUDE}
    start:
      PUTC 's'
      paddd xmm0, xmm1
      PUTC 'S'
      ${RESET}
  `, ORIGIN);
  const r = await runTinyGuest({ image, origin: ORIGIN, setup: longModeSetup(ORIGIN) });
  if (!pvm) {
    assert.equal(r.output, 'sS'); // hardware executes it
    return;
  }
  assert.equal(r.output, 's');
  assert.equal(r.exit.reason, 'crash');
  assert.match(r.exit.detail, /66 0f fe c1/);
});

test('ring-3 syscall: pins down what this host does (PVM: LSTAR code runs in ring 3)', { skip: kvmSkip }, async () => {
  const image = assemble(`${PRELUDE}
    start:
      GATE 13, gp_handler
      GATE 14, pf_handler
      lidt [rip + idt_desc]
      lgdt [rip + gdt_desc]
      # TSS descriptor (16 bytes) at selector 0x30, with RSP0 for exceptions from ring 3.
      lea rax, [rip + tss]
      lea rdi, [rip + gdt + 0x30]
      mov word ptr [rdi], 0x67
      mov word ptr [rdi + 2], ax
      shr rax, 16
      mov byte ptr [rdi + 4], al
      mov byte ptr [rdi + 5], 0x89
      mov byte ptr [rdi + 6], 0
      mov byte ptr [rdi + 7], ah
      shr rax, 16
      mov dword ptr [rdi + 8], eax
      lea rax, [rip + kstack_top]
      mov qword ptr [rip + tss + 4], rax
      mov word ptr [rip + tss + 102], 104   # no I/O permission bitmap: ring-3 port I/O faults
      mov ax, 0x30
      ltr ax
      # SYSCALL: EFER.SCE, STAR (kernel CS 0x10), LSTAR = entry, SFMASK = IF.
      mov ecx, 0xc0000080
      rdmsr
      or eax, 1
      wrmsr
      mov ecx, 0xc0000081
      xor eax, eax
      mov edx, 0x00100010
      wrmsr
      mov ecx, 0xc0000082
      lea rax, [rip + syscall_entry]
      mov rdx, rax
      shr rdx, 32
      wrmsr
      PUTC 'k'
      # iretq to ring 3: SS 0x23 (data DPL3), RSP, RFLAGS, CS 0x2b (code64 DPL3), RIP.
      push 0x23
      lea rax, [rip + ustack_top]
      push rax
      push 0x2
      push 0x2b
      lea rax, [rip + user]
      push rax
      iretq
    user:
      syscall
      ud2
    syscall_entry:
      mov ax, cs
      and al, 3
      add al, '0'
      mov byte ptr [rip + cpl], al
      out 0xe9, al                     # faults (#GP) if we are still in ring 3
      ${RESET}
    gp_handler:
      PUTC 'G'
      mov al, byte ptr [rip + cpl]
      out 0xe9, al
      ${RESET}
    pf_handler:
      PUTC 'P'
      ${RESET}
    .balign 16
    # null, unused, kernel code64 0x10, kernel data 0x18, user data 0x23, user code64 0x2b, TSS 0x30 (16 bytes)
    gdt: .quad 0, 0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x00cff3000000ffff, 0x00affb000000ffff, 0, 0
    gdt_desc: .word 8 * 8 - 1
              .quad gdt
    idt: .fill 32 * 16, 1, 0
    idt_desc: .word 32 * 16 - 1
              .quad idt
    cpl: .byte '?'
    .balign 16
    tss: .fill 104, 1, 0
    .fill 4096, 1, 0
    kstack_top:
    .fill 4096, 1, 0
    ustack_top:
  `, ORIGIN);
  const r = await runTinyGuest({ image, origin: ORIGIN, setup: longModeSetup(ORIGIN, { userPages: true }) });
  console.log(`ring-3 syscall on this host: output ${JSON.stringify(r.output)} ${r.exit.detail}`);
  assert.equal(r.exit.reason, 'reset');
  if (pvm) {
    // SYSCALL jumped to LSTAR without leaving ring 3; the port write then raised #GP in ring 0.
    assert.equal(r.output, 'kG3');
  } else {
    assert.equal(r.output, 'k0');
  }
});
