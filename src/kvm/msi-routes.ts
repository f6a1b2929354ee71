// MSI delivery through irqfd: each device vector owns a GSI and an eventfd registered with
// KVM_IRQFD, and the GSI routing table maps that GSI to the vector's current MSI message. Raising
// the vector is one eventfd write — from any thread — and KVM injects it without a return to us.
// The routing table is VM-wide and KVM_SET_GSI_ROUTING replaces it whole, so it has one owner
// (the I/O thread) that rewrites it only when a vector's message changed (driver set-up, affinity
// changes), never per interrupt.
import * as libc from '../sys/libc.js';
import type { GsiRoute, VmFd } from './kvm.js';

/** KVM's x86 IRQ chips (KVM_IRQCHIP_*). */
const IRQCHIP = { PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const;
/** GSIs 0–23 are the IOAPIC's pins; MSI routes start after them. */
export const FIRST_MSI_GSI = 24;

/**
 * The routes KVM_CREATE_IRQCHIP installs (virt/kvm/irqchip.c's default table for x86): GSIs 0–15
 * to both the PICs and the IOAPIC, 16–23 to the IOAPIC. Setting a table replaces them, so every
 * table we set starts with these.
 */
export function defaultIrqchipRoutes(): GsiRoute[] {
  const routes: GsiRoute[] = [];
  for (let gsi = 0; gsi < FIRST_MSI_GSI; gsi++) {
    routes.push({ kind: 'irqchip', gsi, irqchip: IRQCHIP.IOAPIC, pin: gsi });
    if (gsi < 16) routes.push({ kind: 'irqchip', gsi, irqchip: gsi < 8 ? IRQCHIP.PIC_MASTER : IRQCHIP.PIC_SLAVE, pin: gsi % 8 });
  }
  return routes;
}

/** One vector's wiring: the eventfd KVM listens on and the GSI it injects. */
export interface MsiVector {
  fd: number;
  gsi: number;
}

/** Allocates GSIs and irqfds (main thread, before the vCPUs run). */
export class MsiVectorAllocator {
  private next = FIRST_MSI_GSI;

  constructor(private readonly vm: VmFd, private readonly eventfd: () => number) {}

  allocate(count: number): MsiVector[] {
    return Array.from({ length: count }, () => {
      const vector = { fd: this.eventfd(), gsi: this.next++ };
      // A GSI without a route yet is allowed: KVM re-resolves every irqfd when the table changes.
      this.vm.irqfd(vector.fd, vector.gsi);
      return vector;
    });
  }
}

/** The owner of the routing table (one per VM, on the I/O thread). */
export class MsiRouter {
  private readonly messages = new Map<number, { addressLo: number; addressHi: number; data: number }>();
  /** Routing-table rewrites so far (for metrics and tests). */
  updates = 0;

  constructor(private readonly vm: VmFd) {}

  /** Raises `vector` with this message, first pointing its GSI at the message if it changed. */
  raise(vector: MsiVector, address: bigint, data: number): void {
    const addressLo = Number(address & 0xffffffffn);
    const addressHi = Number((address >> 32n) & 0xffffffffn);
    const known = this.messages.get(vector.gsi);
    if (!known || known.addressLo !== addressLo || known.addressHi !== addressHi || known.data !== data) {
      this.messages.set(vector.gsi, { addressLo, addressHi, data });
      this.vm.setGsiRouting(this.routes());
      this.updates++;
    }
    libc.eventfdSignal(vector.fd);
  }

  private routes(): GsiRoute[] {
    const routes = defaultIrqchipRoutes();
    for (const [gsi, m] of this.messages) routes.push({ kind: 'msi', gsi, ...m });
    return routes;
  }
}
