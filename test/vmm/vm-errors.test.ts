// The library's answers to bad input: one clear error each, and nothing left behind (fds, memory, threads).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kvmSkip } from '../helpers/kvm.js';
import { tempDir } from '../helpers/native.js';
import { Vm } from '../../src/vmm/vm.js';
import { TypevisorError } from '../../src/base/errors.js';

const openFds = (): number => readdirSync('/proc/self/fd').length;

async function rejects(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TypevisorError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  });
}

test('bad kernels, initrds, sizes and counts are refused with a clear error and no leak', { skip: kvmSkip }, async () => {
  const dir = tempDir();
  const notKernel = join(dir, 'notes.txt');
  writeFileSync(notKernel, 'hello, I am not a kernel'.repeat(100));
  const fds = openFds();
  await rejects(Vm.create({ kernel: join(dir, 'missing') }), 'KERNEL_UNREADABLE', /no such file.*--kernel/);
  await rejects(Vm.create({ kernel: dir }), 'KERNEL_UNREADABLE', /directory/);
  await rejects(Vm.create({ kernel: notKernel }), 'KERNEL_FORMAT', /neither an ELF vmlinux nor a bzImage/);
  await rejects(Vm.create({ kernel: notKernel, vcpus: 0 }), 'INVALID_ARGUMENT', /vCPU count/);
  await rejects(Vm.create({ kernel: notKernel, vcpus: 100000 }), 'INVALID_ARGUMENT', /at most \d+ vCPUs/);
  await rejects(Vm.create({ kernel: notKernel, memoryMib: 8 }), 'INVALID_ARGUMENT', /at least 16 MiB/);
  await rejects(Vm.create({ kernel: notKernel, memoryMib: 64 * 1024 * 1024 }), 'MEMORY_TOO_LARGE', /host has \d+ MiB/);
  await rejects(Vm.create({ kernel: notKernel, initrd: join(dir, 'missing.cpio') }), 'INITRD_UNREADABLE', /no such file/);
  await rejects(Vm.create({ kernel: notKernel, nets: [{ tap: 'tvx0', address: 'dhcp' }] }), 'INVALID_ARGUMENT', /need a bridge/);
  await rejects(Vm.create({ kernel: notKernel, nets: [{ tap: 'tvx0', address: '10.0.0.2/24' }, { tap: 'tvx1', address: '10.0.1.2/24' }] }), 'INVALID_ARGUMENT', /only one NIC/);
  await rejects(Vm.create({ kernel: notKernel, nets: [{ tap: 'tvx0', address: '10.0.0.2' }] }), 'INVALID_ARGUMENT', /not an IPv4 address with a prefix length/);
  await rejects(Vm.create({ kernel: notKernel, vsock: { cid: 2 } }), 'INVALID_ARGUMENT', /CID 2 is not a guest CID/);
  await rejects(Vm.create({ kernel: notKernel, vsock: { socketPath: join(dir, 'no', 'such', 'dir', 'v.sock') } }), 'SYSCALL_FAILED', /bind/);
  await rejects(Vm.create({ kernel: notKernel, vsock: { socketPath: join(dir, 'x'.repeat(100)) } }), 'INVALID_ARGUMENT', /socket path .* is too long: with a host port's suffix/);
  assert.equal(openFds(), fds, 'every failed create released its fds');
});
