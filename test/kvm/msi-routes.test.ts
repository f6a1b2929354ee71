// irqfd MSI delivery on real KVM: the routing table KVM accepts (its irqchip defaults plus our MSI
// routes), rewritten only when a vector's message changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as libc from '../../src/sys/libc.js';
import { Kvm } from '../../src/kvm/kvm.js';
import { defaultIrqchipRoutes, FIRST_MSI_GSI, MsiRouter, MsiVectorAllocator } from '../../src/kvm/msi-routes.js';
import { kvmSkip } from '../helpers/kvm.js';

test('the default irqchip routes: 16 PIC+IOAPIC pairs, 8 IOAPIC-only pins', () => {
  const routes = defaultIrqchipRoutes();
  assert.equal(routes.length, 16 * 2 + 8);
  assert.ok(routes.every((r) => r.kind === 'irqchip' && r.gsi < FIRST_MSI_GSI));
  assert.deepEqual(routes.filter((r) => r.gsi === 9), [
    { kind: 'irqchip', gsi: 9, irqchip: 2, pin: 9 }, { kind: 'irqchip', gsi: 9, irqchip: 1, pin: 1 }]);
});

test('vectors get irqfds on fresh GSIs; raising routes once per message, then only signals', { skip: kvmSkip }, () => {
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  const fds: number[] = [];
  try {
    vm.createIrqchip();
    const alloc = new MsiVectorAllocator(vm, () => { const fd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK); fds.push(fd); return fd; });
    const vectors = [...alloc.allocate(2), ...alloc.allocate(1)];
    assert.deepEqual(vectors.map((v) => v.gsi), [24, 25, 26]);
    const router = new MsiRouter(vm);
    router.raise(vectors[0]!, 0xfee0_0000n, 0x41);
    router.raise(vectors[0]!, 0xfee0_0000n, 0x41);
    router.raise(vectors[1]!, 0xfee0_0000n, 0x42);
    assert.equal(router.updates, 2, 'one table per new message, none for a repeat');
    router.raise(vectors[0]!, 0xfee0_1000n, 0x41);
    assert.equal(router.updates, 3, 'a moved vector (new destination) is re-routed');
    // The IOAPIC lines still work after our tables replaced KVM's defaults.
    vm.irqLine(4, true);
    vm.irqLine(4, false);
  } finally {
    for (const fd of fds) libc.close(fd);
    vm.close();
    kvm.close();
  }
});
