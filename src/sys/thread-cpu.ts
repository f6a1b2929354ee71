// CPU time of one thread of this process, from the scheduler's statistics (ns resolution).
import { readFileSync } from 'node:fs';

/**
 * Nanoseconds thread `tid` has run (schedstat's first field); the calling thread when `tid` is
 * omitted. 0 when the thread is gone.
 */
export function threadCpuNs(tid?: number): number {
  try {
    const path = tid === undefined ? '/proc/thread-self/schedstat' : `/proc/self/task/${tid}/schedstat`;
    return Number(readFileSync(path, 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}
