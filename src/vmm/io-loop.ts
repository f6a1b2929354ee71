// The I/O thread's event loop: one epoll set, each fd with its handler and event mask. Handlers run
// on this thread, one event at a time; they never block (every fd in the set is non-blocking).
import * as libc from '../sys/libc.js';
import { epollAddEvents, epollModifyEvents, epollRemove, epollWaitEvents, EPOLL } from '../sys/unix-socket.js';

export { EPOLL } from '../sys/unix-socket.js';

export type IoHandler = (events: number) => void;

export class IoLoop {
  private readonly ep = libc.epollCreate();
  private readonly handlers = new Map<number, IoHandler>();
  private nextToken = 1;

  /** Watches `fd` for `events` (EPOLL.IN by default); returns the token to change or remove it with. */
  add(fd: number, handler: IoHandler, events: number = EPOLL.IN): number {
    const token = this.nextToken++;
    this.handlers.set(token, handler);
    epollAddEvents(this.ep, fd, events, token);
    return token;
  }

  modify(fd: number, token: number, events: number): void {
    epollModifyEvents(this.ep, fd, events, token);
  }

  /** Takes `fd` out of the set (before it is closed). */
  remove(fd: number, token: number): void {
    this.handlers.delete(token);
    epollRemove(this.ep, fd);
  }

  /** Waits up to `timeoutMs` and runs the handler of every fd that became ready; returns how many did. */
  runOnce(timeoutMs: number): number {
    const ready = epollWaitEvents(this.ep, 64, timeoutMs);
    for (const [token, events] of ready) {
      // A handler earlier in this batch may have removed it.
      this.handlers.get(token)?.(events);
    }
    return ready.length;
  }

  close(): void {
    libc.close(this.ep);
  }
}
