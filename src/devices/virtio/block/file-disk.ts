// A disk image file as a virtio-blk backend: raw format (sparse files welcome), one preadv/pwritev
// per request straight between the file and guest memory, fdatasync for flushes, holes punched
// for discards, and a lock on the file so that two VMs can never write one image at once.
import { closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { TypevisorError } from '../../../base/errors.js';
import * as libc from '../../../sys/libc.js';
import { SECTOR, type BlockBackend } from './request.js';

const ZEROES = new Uint8Array(1 << 16);
/** Linux's IOV_MAX: a request with more buffers is done in several calls. */
const IOV_MAX = 1024;

export class FileDisk implements BlockBackend {
  private closed = false;
  /** The iovec array, reused by every request (a FileDisk is used by one thread). */
  private readonly iovBytes = new Uint8Array(IOV_MAX * libc.IOVEC_BYTES);
  private readonly iov = new DataView(this.iovBytes.buffer);

  private constructor(readonly path: string, private readonly fd: number, readonly sizeBytes: number, readonly readOnly: boolean) {}

  /**
   * Opens an image. Read-write drives take an exclusive lock, read-only ones a shared lock, so
   * several VMs may read an image nobody writes. Errors name the file, the problem and the fix.
   */
  static open(path: string, opts: { readOnly: boolean }): FileDisk {
    let fd: number;
    try {
      fd = openSync(path, opts.readOnly ? 'r' : 'r+');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file — create it first (e.g. truncate -s 1G FILE && mkfs.ext4 FILE)'
        : (code === 'EACCES' || code === 'EROFS' || code === 'EPERM') && !opts.readOnly ? 'it cannot be written — attach it read-only with ,ro'
          : code === 'EISDIR' ? 'it is a directory' : String(code);
      throw new TypevisorError('INVALID_ARGUMENT', `cannot open the disk image ${path}: ${why}`, { cause: e });
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new TypevisorError('INVALID_ARGUMENT', `the disk image ${path} is not a regular file`);
      if (!libc.flock(fd, (opts.readOnly ? libc.LOCK_SH : libc.LOCK_EX) | libc.LOCK_NB)) {
        throw new TypevisorError('INVALID_ARGUMENT', `the disk image ${path} is in use by another VM${opts.readOnly ? ' that writes it' : ''} — stop that VM${opts.readOnly ? '' : ', or attach the image read-only with ,ro where it is not written'}`);
      }
      // The guest sees whole sectors; a partial last sector is not addressable.
      const size = Math.floor(st.size / SECTOR) * SECTOR;
      return new FileDisk(path, fd, size, opts.readOnly);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }


  read(offset: number, into: readonly Uint8Array[]): void {
    this.vectored(offset, into, libc.preadv, (v, at) => {
      this.whole(v, at, (part, pos) => readSync(this.fd, part, 0, part.length, pos), () => true);
    });
  }

  write(offset: number, from: readonly Uint8Array[]): void {
    this.vectored(offset, from, libc.pwritev, (v, at) => {
      this.whole(v, at, (part, pos) => writeSync(this.fd, part, 0, part.length, pos), () => false);
    });
  }

  /**
   * Moves `parts` to or from the file at `offset`: one vectored call per run of host-mapped parts
   * (in the VMM: all of them, so one system call per request), and `single` for parts outside
   * host memory (unit tests' plain buffers) and for whatever a short transfer left over.
   */
  private vectored(offset: number, parts: readonly Uint8Array[], call: (fd: number, iov: Uint8Array, n: number, off: number) => number,
    single: (v: Uint8Array, at: number) => void): void {
    let i = 0;
    while (i < parts.length) {
      let count = 0;
      let bytes = 0;
      for (; i + count < parts.length && count < IOV_MAX; count++) {
        const part = parts[i + count]!;
        const address = libc.hostAddressOf(part);
        if (address === undefined) break;
        this.iov.setBigUint64(count * libc.IOVEC_BYTES, BigInt(address), true);
        this.iov.setBigUint64(count * libc.IOVEC_BYTES + 8, BigInt(part.length), true);
        bytes += part.length;
      }
      if (count === 0) {
        single(parts[i]!, offset);
        offset += parts[i]!.length;
        i++;
        continue;
      }
      let done = call(this.fd, this.iovBytes, count, offset);
      for (let k = 0; k < count && done < bytes; k++) {
        const part = parts[i + k]!;
        if (done >= part.length) done -= part.length;
        else {
          single(part.subarray(done), offset + done);
          done = 0;
        }
        offset += part.length;
        bytes -= part.length;
      }
      offset += bytes;
      i += count;
    }
  }

  /** Loops a plain read or write over all of `v`; at end of file, reads fill zeroes (as a hole would). */
  private whole(v: Uint8Array, at: number, io: (part: Uint8Array, pos: number) => number, zeroFillAtEnd: () => boolean): void {
    let moved = 0;
    while (moved < v.length) {
      const n = io(v.subarray(moved), at + moved);
      if (n > 0) { moved += n; continue; }
      if (!zeroFillAtEnd()) throw new Error(`no progress writing ${this.path} at ${at + moved}`);
      v.fill(0, moved);
      return;
    }
  }

  flush(): void {
    fdatasyncSync(this.fd);
  }

  discard(offset: number, length: number): void {
    // Advisory: where the filesystem cannot punch holes the data simply stays.
    libc.fallocate(this.fd, libc.FALLOC_FL_PUNCH_HOLE | libc.FALLOC_FL_KEEP_SIZE, offset, length);
  }

  writeZeroes(offset: number, length: number, unmap: boolean): void {
    const mode = unmap ? libc.FALLOC_FL_PUNCH_HOLE | libc.FALLOC_FL_KEEP_SIZE : libc.FALLOC_FL_ZERO_RANGE | libc.FALLOC_FL_KEEP_SIZE;
    if (libc.fallocate(this.fd, mode, offset, length) === 0) return;
    for (let done = 0; done < length; done += ZEROES.length) {
      this.write(offset + done, [ZEROES.subarray(0, Math.min(ZEROES.length, length - done))]);
    }
  }

  /** The open file descriptor (for the I/O thread, which wraps it with fromFd). */
  get fileDescriptor(): number {
    return this.fd;
  }

  /** Wraps an image another thread of this process opened (and locked) with open(). The caller never closes it. */
  static fromFd(path: string, fd: number, sizeBytes: number, readOnly: boolean): FileDisk {
    return new FileDisk(path, fd, sizeBytes, readOnly);
  }

  /** Closes the file (dropping its lock). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
