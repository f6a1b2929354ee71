// Loads a Linux kernel (ELF vmlinux via PVH, or bzImage via the 64-bit or 16-bit boot protocol) into guest memory.
import { readFile } from 'node:fs/promises';
import { TypevisorError } from '../base/errors.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { Regs, Sregs } from '../kvm/structs.js';
import { parseElfKernel, loadElfKernel } from '../arch/x86_64/elf.js';
import { parseBzImage, loadBzImage, loadRealModeSetup, REAL_MODE_SETUP_SEGMENT, HDR } from '../arch/x86_64/bzimage.js';
import { buildZeroPage, writeZeroPage } from '../arch/x86_64/zero-page.js';
import { writePvhStartInfo, pvhBootState } from '../arch/x86_64/pvh.js';
import { placeInitrd } from '../arch/x86_64/initrd.js';
import { writeGdt, longModeBootState, realModeBootState } from '../arch/x86_64/gdt.js';
import { writeIdentityPageTables } from '../arch/x86_64/page-tables.js';
import { e820Map, LAYOUT } from '../arch/x86_64/layout.js';
import { writeAcpiTables } from '../arch/x86_64/acpi-tables.js';

/** How the kernel was entered, and the register state its first vCPU starts with. */
export interface LinuxBoot {
  protocol: 'pvh' | 'linux64' | 'linux16';
  regs: Partial<Regs>;
  sregs: Omit<Sregs, 'cr2' | 'cr8' | 'apic_base' | 'interrupt_bitmap'>;
  cmdline: string;
  initrd?: { gpa: number; size: number } | undefined;
}

export interface LinuxLoadOptions {
  kernel: string;
  initrd?: string | undefined;
  cmdline: string;
  memoryBytes: number;
  vcpus: number;
}

/** The real-mode stack: 0x200 above the setup heap's end (HEAP_END_PTR, 0xde00), as boot.rst's example lays it out. */
const REAL_MODE_STACK = 0xe000;

async function readInput(path: string, what: 'kernel' | 'initrd'): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : String(code);
    throw new TypevisorError(what === 'kernel' ? 'KERNEL_UNREADABLE' : 'INITRD_UNREADABLE',
      `cannot read the ${what} ${path}: ${why} — check the path given with --${what}`, { cause: e });
  }
}

export async function loadLinux(memory: GuestMemory, opts: LinuxLoadOptions): Promise<LinuxBoot> {
  const image = await readInput(opts.kernel, 'kernel');
  const initrdImage = opts.initrd === undefined ? undefined : await readInput(opts.initrd, 'initrd');
  const isElf = image.length >= 4 && image[0] === 0x7f && image[1] === 0x45 && image[2] === 0x4c && image[3] === 0x46;
  const cmdline = new TextEncoder().encode(`${opts.cmdline}\0`);
  if (cmdline.length > LAYOUT.CMDLINE_MAX) {
    throw new TypevisorError('INVALID_ARGUMENT', `the kernel command line is ${cmdline.length - 1} bytes; the limit is ${LAYOUT.CMDLINE_MAX - 1}`);
  }
  memory.write(LAYOUT.CMDLINE, cmdline);
  const e820 = e820Map(opts.memoryBytes);
  const rsdpAddr = writeAcpiTables(memory, { vcpus: opts.vcpus, memoryBytes: opts.memoryBytes });

  if (isElf) {
    const elf = parseElfKernel(image, opts.kernel);
    const kernelEnd = loadElfKernel(memory, image, elf);
    const initrd = initrdImage ? placeInitrd(memory, initrdImage, { kernelEnd, maxAddr: 0xffffffff }) : undefined;
    if (elf.pvhEntry !== undefined) {
      const startInfo = writePvhStartInfo(memory, { cmdlineGpa: LAYOUT.CMDLINE, e820, initrd, rsdpAddr });
      return { protocol: 'pvh', ...pvhBootState(memory, elf.pvhEntry, startInfo), cmdline: opts.cmdline, initrd };
    }
    writeZeroPage(memory, { cmdlineGpa: LAYOUT.CMDLINE, cmdlineSize: cmdline.length - 1, e820, initrd, rsdpAddr });
    writeGdt(memory);
    writeIdentityPageTables(memory);
    return { protocol: 'linux64', ...longModeBootState(elf.entry), cmdline: opts.cmdline, initrd };
  }

  const bz = parseBzImage(image, opts.kernel);
  const kernelEnd = loadBzImage(memory, image, bz);
  const initrd = initrdImage
    ? placeInitrd(memory, initrdImage, { kernelEnd, maxAddr: bz.initrdAddrMax })
    : undefined;
  if (!bz.has64BitEntry) {
    // No 64-bit entry (protocol < 2.12 or a 32-bit kernel): run its real-mode setup code, whose
    // copy of the setup header is the zero page.
    const setup = loadRealModeSetup(memory, image, bz);
    const header = buildZeroPage({ cmdlineGpa: LAYOUT.CMDLINE, cmdlineSize: cmdline.length - 1, e820, initrd, rsdpAddr, setupHeader: bz.setupHeader });
    memory.write(setup + HDR.SETUP_SECTS, header.subarray(HDR.SETUP_SECTS, HDR.SETUP_SECTS + bz.setupHeader.length));
    return { protocol: 'linux16', ...realModeBootState(REAL_MODE_SETUP_SEGMENT, REAL_MODE_STACK), cmdline: opts.cmdline, initrd };
  }
  writeZeroPage(memory, { cmdlineGpa: LAYOUT.CMDLINE, cmdlineSize: cmdline.length - 1, e820, initrd, rsdpAddr, setupHeader: bz.setupHeader });
  writeGdt(memory);
  writeIdentityPageTables(memory);
  return { protocol: 'linux64', ...longModeBootState(bz.entry64), cmdline: opts.cmdline, initrd };
}
