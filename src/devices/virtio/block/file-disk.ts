// A disk image file as a virtio-blk backend: raw format (sparse files welcome), I/O straight
// between the file and guest-memory views, fdatasync for flushes, holes punched for discards, and
// a lock on the file so that two VMs can never write one image at once.
import { closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { TypevisorError } from '../../../base/errors.js';
import * as libc from '../../../sys/libc.js';
import { SECTOR, type BlockBackend } from './request.js';

const ZEROES = new Uint8Array(1 << 16);

export class FileDisk implements BlockBackend {
  private closed = false;

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

  read(offset: number, into: Uint8Array): void {
    let done = 0;
    while (done < into.length) {
      const n = readSync(this.fd, into, done, into.length - done, offset + done);
      if (n === 0) {
        // The file shrank under us: what is gone reads as zeroes, as a hole would.
        into.fill(0, done);
        return;
      }
      done += n;
    }
  }

  write(offset: number, from: Uint8Array): void {
    let done = 0;
    while (done < from.length) done += writeSync(this.fd, from, done, from.length - done, offset + done);
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
      this.write(offset + done, ZEROES.subarray(0, Math.min(ZEROES.length, length - done)));
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
