// Integration: tiny real-mode guests on real KVM — PIO and MMIO round trips, serial output, i8042 reset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kvmSkip } from '../helpers/kvm.js';
import { assemble } from '../helpers/guest-asm.js';
import { runTinyGuest } from '../helpers/tiny-guest.js';

const ORIGIN = 0x1000;

test('real-mode guest prints on COM1, reads back the UART and an unmapped MMIO address, resets via i8042',
  { skip: kvmSkip }, async () => {
    const image = assemble(`
      .code16
      start:
        mov dx, 0x3fb           # LCR: 8N1, then read it back through the PIO bus
        mov al, 0x03
        out dx, al
        in al, dx
        cmp al, 0x03
        jne fail
        mov si, offset msg
      print:
        lodsb
        test al, al
        jz mmio
        mov dx, 0x3f8
        out dx, al
        jmp print
      mmio:
        mov ax, 0xd000          # unmapped guest-physical 0xd0000: reads come back all ones
        mov ds, ax
        mov byte ptr [0], 0x5a  # an MMIO write exit (ignored)
        mov al, byte ptr [0]    # an MMIO read exit
        xor bx, bx
        mov ds, bx
        cmp al, 0xff
        jne fail
        mov al, 'M'
        mov dx, 0x3f8
        out dx, al
        mov al, 0xfe            # i8042: pulse the reset line
        out 0x64, al
      hang:
        hlt
        jmp hang
      fail:
        mov al, 'F'
        mov dx, 0x3f8
        out dx, al
        jmp hang
      msg: .asciz "hello from real mode\\n"
    `, ORIGIN);
    const r = await runTinyGuest({ image, origin: ORIGIN, memoryBytes: 0x80000 });
    assert.equal(r.output, 'hello from real mode\nM');
    assert.equal(r.exit.reason, 'reset');
    assert.ok(r.exits >= 20, `expected one exit per port access, saw ${r.exits}`);
  });

test('stop() kicks a vCPU out of KVM_RUN, whether the guest is halted or spinning', { skip: kvmSkip }, async () => {
  const halted = await runTinyGuest({ image: assemble('.code16\n cli\n hlt\n', ORIGIN), origin: ORIGIN, timeoutMs: 300 });
  assert.equal(halted.exit.reason, 'stopped');
  const spinning = await runTinyGuest({
    image: assemble('.code16\n sti\nspin: jmp spin\n', ORIGIN), origin: ORIGIN, timeoutMs: 300,
  });
  assert.equal(spinning.exit.reason, 'stopped');
});
