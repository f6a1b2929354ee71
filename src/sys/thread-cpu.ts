// CPU time of one thread of this process: the scheduler's statistics for another thread, the
// thread clock for the calling one (ns resolution both).
import { readFileSync } from 'node:fs';
import { threadCpuTimeNs } from './libc.js';

/**
 * Nanoseconds thread `tid` has run (schedstat's first field); the calling thread when `tid` is
 * omitted. 0 when the thread is gone.
 */
export function threadCpuNs(tid?: number): number {
  if (tid === undefined) return threadCpuTimeNs();
  try {
    return Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}
