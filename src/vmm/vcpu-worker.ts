// A vCPU worker thread: loop { KVM_RUN → decode the exit → handle it on this thread }.
import { parentPort, workerData } from 'node:worker_threads';
import { VcpuFd, VmFd } from '../kvm/kvm.js';
import { INTERNAL_ERROR, SYSTEM_EVENT, type VcpuExit } from '../kvm/exit.js';
import * as libc from '../sys/libc.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { CONTROL, type ExitReason, type VcpuWorkerData, type WorkerMessage } from './vcpu-protocol.js';
import { createLegacyDevices } from './legacy-devices.js';
import { describeVcpu } from './vcpu-report.js';
import { VcpuAssist } from './vcpu-assist.js';

const data = workerData as VcpuWorkerData;
const port = parentPort!;
const post = (m: WorkerMessage): void => port.postMessage(m);
const control = new Int32Array(data.control);

libc.blockSignals([data.kickSignal]);
const vcpu = new VcpuFd(data.vcpuFd, data.mmapSize);
// While in KVM_RUN every signal but the kick stays blocked, so only a kick interrupts the guest.
vcpu.setSignalMask(Array.from({ length: 64 }, (_, i) => i + 1).filter((s) => s !== data.kickSignal));
const vm = new VmFd(data.vmFd);
const memory = new GuestMemory(new Uint8Array(libc.hostView(data.memoryAddr, data.memoryBytes)), data.regions);

let output: number[] = [];
let ended: { reason: ExitReason; detail: string } | undefined;
const end = (reason: ExitReason, detail: string): void => {
  ended ??= { reason, detail };
};

const { pio, mmio } = createLegacyDevices({
  state: data.deviceState,
  onOutput: (b) => output.push(b),
  irqLine: (irq, level) => vm.irqLine(irq, level),
  onReset: (how) => end('reset', `the guest reset the machine (${how})`),
  onPowerOff: () => end('poweroff', 'the guest powered off (ACPI S5)'),
});
const assist = data.assist ? new VcpuAssist(vcpu, memory, data.xsaveLayout) : undefined;

post({ type: 'ready', tid: libc.gettid() });

function handle(exit: VcpuExit): void {
  switch (exit.kind) {
    case 'io': {
      const { size, data: bytes } = exit;
      for (let i = 0; i + size <= bytes.length; i += size) {
        const item = bytes.subarray(i, i + size);
        if (exit.write) pio.write(exit.port, item);
        else pio.read(exit.port, item);
      }
      return;
    }
    case 'mmio':
      if (exit.write) mmio.write(exit.address, exit.data);
      else mmio.read(exit.address, exit.data);
      return;
    case 'hlt':
      // With the in-kernel LAPIC a halt only exits when it can never be woken (interrupts off).
      end('poweroff', 'the guest halted with interrupts disabled');
      return;
    case 'shutdown':
      end('crash', `triple fault on vCPU ${data.index}\n${describeVcpu(vcpu, memory)}`);
      return;
    case 'system-event':
      if (exit.type === SYSTEM_EVENT.SHUTDOWN) end('poweroff', 'the guest powered off');
      else if (exit.type === SYSTEM_EVENT.RESET) end('reset', 'the guest reset the machine');
      else end('crash', `the guest reported a crash (system event ${exit.type})`);
      return;
    case 'internal-error': {
      if (exit.suberror === INTERNAL_ERROR.EMULATION && assist) {
        const outcome = assist.handle();
        if (outcome.handled) {
          Atomics.add(control, CONTROL.ASSISTS, 1);
          post({ type: 'assist', kind: outcome.kind });
          return;
        }
        end('crash', `KVM could not emulate an instruction and the assist cannot complete it: ${outcome.report}\n` +
          describeVcpu(vcpu, memory));
        return;
      }
      end('crash', `KVM internal error, suberror ${exit.suberror} ` +
        `(data ${exit.data.map((d) => `0x${d.toString(16)}`).join(' ')})\n${describeVcpu(vcpu, memory)}`);
      return;
    }
    case 'fail-entry':
      end('crash', `KVM could not enter the guest: hardware reason 0x${exit.reason.toString(16)}`);
      return;
    case 'intr':
    case 'debug':
      return;
    case 'unknown':
      end('crash', `unexpected KVM exit reason ${exit.reason}\n${describeVcpu(vcpu, memory)}`);
      return;
  }
}

function flushOutput(): void {
  if (output.length > 0) {
    post({ type: 'output', bytes: Uint8Array.from(output) });
    output = [];
  }
}

/**
 * Parks this vCPU while the host has it paused: first lets KVM complete the last exit's I/O so that
 * the registers are whole (state can be saved), then sleeps on the PAUSE word until it is cleared
 * (or the VM stops).
 */
function park(): void {
  vcpu.completePendingIo();
  libc.drainSignals([data.kickSignal]);
  Atomics.add(control, CONTROL.PAUSED, 1);
  Atomics.notify(control, CONTROL.PAUSED);
  while (Atomics.load(control, CONTROL.PAUSE) !== 0 && Atomics.load(control, CONTROL.STOP) === 0) {
    Atomics.wait(control, CONTROL.PAUSE, 1, 1000);
  }
  Atomics.sub(control, CONTROL.PAUSED, 1);
  Atomics.notify(control, CONTROL.PAUSED);
}

let dumpsAnswered = 0;
try {
  while (ended === undefined && Atomics.load(control, CONTROL.STOP) === 0) {
    if (Atomics.load(control, CONTROL.PAUSE) !== 0) {
      park();
      continue;
    }
    const exit = vcpu.run();
    if (exit === 'interrupted') {
      libc.drainSignals([data.kickSignal]);
      const dump = Atomics.load(control, CONTROL.DUMP);
      if (dump !== dumpsAnswered) {
        dumpsAnswered = dump;
        post({ type: 'dump', text: `vCPU ${data.index}:\n${describeVcpu(vcpu, memory)}` });
      }
      continue;
    }
    Atomics.add(control, CONTROL.EXITS, 1);
    handle(exit);
    flushOutput();
  }
} catch (e) {
  end('crash', `vCPU ${data.index} failed: ${e instanceof Error ? e.message : String(e)}`);
}
flushOutput();
vcpu.unmap();
post({ type: 'exit', reason: ended?.reason ?? 'stopped', detail: ended?.detail ?? 'stopped by the host' });
