// The library: `import { Vm } from 'typevisor'` — create, start, pause, resume and stop VMs, read
// their console and metrics, run commands and move files through the guest agent; build the
// default guest and disk images.
export { Vm, type VmOptions, type VmExit, type VmMetrics } from './vmm/vm.js';
export type { DiskOptions, NetOptions } from './vmm/virtio-devices.js';
export { GuestAgent, GuestProcess, type AgentHealth, type ExecOptions, type ExecResult } from './vmm/guest-agent.js';
export { TypevisorError } from './base/errors.js';
export { ensureDefaultGuest, guestAssets, GUEST_NAMES, type GuestAssets } from './guest/default-guest.js';
export { createImage, type CreateImageOptions } from './guest/disk-image.js';
export { encodeCommand } from './guest/command-protocol.js';
