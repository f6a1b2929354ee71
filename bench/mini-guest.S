/* Copied from shared/research/mini-guest/mini.S (the baseline's guest) so bench:start runs the very same guest. */
/*
 * mini.S - minimal "bzImage" (Linux x86 boot protocol 2.06) test guest.
 * The loader (QEMU linuxboot/qboot option ROM, kvmtool, ...) enters the real-mode setup code
 * at offset 0x200 with DS = ES = SS = the setup segment (0x1000 for every loader used here).
 * It writes "GUEST-INIT-REACHED" to COM1 (port 0x3f8), then asks the machine to stop:
 *   1. i8042 pulse-reset (out 0x64, 0xfe)        - pc, q35, kvmtool
 *   2. PCI reset control (out 0xcf9, 0x06)        - pc, q35
 *   3. flat 32-bit protected mode, ACPI GED sleep register S5 (0xfea00200 <- 0x34) - microvm,acpi=on
 *   4. triple fault (zero-limit IDT, load bad selector)
 * Run the VMM with its "exit on reset" option (QEMU -no-reboot).
 */
	.code16
	.text
	.globl _start
_start:
	.org 0x1f1
setup_sects:	.byte 1
root_flags:	.word 0
syssize:	.long 0xe0		/* 3584-byte dummy protected-mode part, in 16-byte units (file >= 4 KiB: kvmtool reads a whole boot_params) */
ram_size:	.word 0
vid_mode:	.word 0xffff
root_dev:	.word 0
boot_flag:	.word 0xaa55
	.org 0x200
	jmp	start
header:		.ascii "HdrS"
version:	.word 0x0206
realmode_swtch:	.long 0
start_sys_seg:	.word 0x1000
kernel_version:	.word 0
type_of_loader:	.byte 0
loadflags:	.byte 0x01		/* LOADED_HIGH */
setup_move_size: .word 0x8000
code32_start:	.long 0x100000
ramdisk_image:	.long 0
ramdisk_size:	.long 0
bootsect_kludge: .long 0
heap_end_ptr:	.word 0
ext_loader_ver:	.byte 0
ext_loader_type: .byte 0
cmd_line_ptr:	.long 0
initrd_addr_max: .long 0x7fffffff
kernel_alignment: .long 0x200000
relocatable_kernel: .byte 0
min_alignment:	.byte 0
xloadflags:	.word 0
cmdline_size:	.long 255

start:
	cli
	cld
	mov	$0x3f8, %dx
	mov	$msg, %si
1:	lodsb
	test	%al, %al
	jz	2f
	outb	%al, %dx
	jmp	1b
2:
.ifdef SPIN
	/* spin variant (not in the baseline): keep the vCPU busy in guest mode for bench:pause */
	mov	$spin_msg, %si
	mov	$0x3f8, %dx
7:	lodsb
	test	%al, %al
	jz	6f
	outb	%al, %dx
	jmp	7b
6:	jmp	6b
.endif
.ifdef IDLE
	/* idle variant: stay halted (interrupts off) so the host can sample the VMM's RSS */
	mov	$idle_msg, %si
	mov	$0x3f8, %dx
4:	lodsb
	test	%al, %al
	jz	5f
	outb	%al, %dx
	jmp	4b
5:	hlt
	jmp	5b
.endif
	/* 1. i8042 reset */
	mov	$0xfe, %al
	outb	%al, $0x64
	/* 2. PCI reset control register */
	mov	$0xcf9, %dx
	mov	$0x06, %al
	outb	%al, %dx
	/* 3. protected mode + ACPI GED S5 (microvm) */
	lgdtl	%ds:gdt_desc
	lidtl	%ds:idt_desc
	mov	%cr0, %eax
	or	$1, %eax
	mov	%eax, %cr0
	ljmpl	$0x08, $(0x10000 + pm32)
	.code32
pm32:
	mov	$0x10, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	movb	$0x34, 0xfea00200	/* SLP_TYP=5 (S5) | SLP_EN */
	/* 4. triple fault: selector 0x40 is beyond the GDT limit -> #GP, IDT limit 0 -> shutdown */
	mov	$0x40, %ax
	mov	%ax, %ds
3:	hlt
	jmp	3b

	.balign 8
gdt:	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: flat 32-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: flat data */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long 0x10000 + gdt
idt_desc:
	.word 0
	.long 0
msg:	.asciz "GUEST-INIT-REACHED\r\n"
idle_msg: .asciz "GUEST-IDLE-READY\r\n"
spin_msg: .asciz "GUEST-SPIN-READY\r\n"
	.org 0x400			/* end of setup (1 + setup_sects sectors) */
	.fill 3584, 1, 0		/* dummy protected-mode "kernel" */
