// The host side of the guest agent: run commands (streamed stdio, exit status), move files, ask
// for health, set the clock — each over its own connection through the VM's hybrid vsock socket
// ("CONNECT 52\n" → "OK <port>\n", then agent-protocol frames). Works from any process that can
// reach the socket: the library's Vm, `typevisor exec`, tests.
import { connect, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { TypevisorError } from '../base/errors.js';
import {
  AGENT_PORT, AgentProtocolError, decodeExit, decodePong, decodeU64, encodeChunked, encodeExec, encodeFields, encodeFrame, encodeU64,
  FRAME, FrameDecoder, MAX_FRAME_PAYLOAD, type AgentHealth, type ExecRequest, type Frame,
} from './agent-protocol.js';

export type { AgentHealth } from './agent-protocol.js';

/** The longest "OK <port>" line a well-behaved VMM sends. */
const MAX_HANDSHAKE_LINE = 32;
/** Chunks of uploads and stdin (well under the frame limit; the stream's back-pressure does the rest). */
const DATA_CHUNK = 256 * 1024;

/** Frames decoded and not yet taken before the socket is paused (the agent then waits, under vsock's credit). */
const HIGH_WATER_FRAMES = 16;
/** Handshake ("OK <port>") within this time, or the VMM is not answering. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** One connection to the agent: frames in order, end of stream as `undefined`; reading pauses while the consumer lags. */
class AgentChannel {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Frame[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  private failure: Error | undefined;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.feed(chunk));
    socket.on('end', () => this.finish());
    socket.on('close', () => this.finish());
    socket.on('error', (e) => this.finish(e));
  }

  feed(chunk: Uint8Array): void {
    try {
      this.frames.push(...this.decoder.push(chunk));
    } catch (e) {
      this.finish(e instanceof Error ? e : new Error(String(e)));
      this.socket.destroy();
    }
    if (this.frames.length >= HIGH_WATER_FRAMES) this.socket.pause();
    this.wake();
  }

  private finish(e?: Error): void {
    if (e && !this.failure) this.failure = e;
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** The next frame, or undefined when the agent closed the connection. */
  async next(): Promise<Frame | undefined> {
    for (;;) {
      const f = this.frames.shift();
      if (this.frames.length < HIGH_WATER_FRAMES / 4 && this.socket.isPaused()) this.socket.resume();
      if (f) return f;
      if (this.failure instanceof AgentProtocolError) throw new TypevisorError('AGENT_FAILED', this.failure.message, { cause: this.failure });
      if (this.ended) return undefined;
      await new Promise<void>((resolve) => { this.waiter = resolve; });
    }
  }

  /** Sends bytes, waiting while the socket's buffer is full. */
  async send(bytes: Uint8Array): Promise<void> {
    if (this.socket.destroyed) throw new TypevisorError('AGENT_FAILED', 'the connection to the guest agent is closed');
    if (this.socket.write(bytes)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done).off('close', done);
        resolve();
      };
      this.socket.on('drain', done).on('close', done);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface ExecOptions {
  env?: Readonly<Record<string, string>>;
  cwd?: string;
  /** Standard input: all of it (then end of input), or a stream to pipe. Default: none (end of input at once). */
  stdin?: string | Uint8Array | Readable;
  /** Kill the command (SIGKILL) and fail after this long. */
  timeoutMs?: number;
  /** exec() keeps at most this many bytes of stdout and of stderr (default 64 MiB); beyond, the command is killed and exec fails — use spawn() to stream more. */
  maxBuffer?: number;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

export interface ExecResult {
  /** What a shell reports: the exit code, or 128 + the signal. */
  exitCode: number;
  /** The signal that ended the command, 0 if it exited. */
  signal: number;
  stdout: string;
  stderr: string;
}

/** exec()'s default cap on collected output, per stream. */
const DEFAULT_MAX_BUFFER = 64 * 2 ** 20;
/** readFile()'s default cap. */
const DEFAULT_MAX_FILE = 2 ** 30;

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGTERM: 15, SIGCONT: 18, SIGSTOP: 19 };

/** A command running in the guest: its stdout and stderr as streams, stdin as a writable, its end as a promise. */
export class GuestProcess extends EventEmitter {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdin: Writable;
  private readonly done: Promise<{ exitCode: number; signal: number }>;

  constructor(private readonly channel: AgentChannel) {
    super();
    this.stdin = new Writable({
      write: (chunk: Buffer, _enc, callback) => {
        void (async () => {
          for (const frame of encodeChunked(FRAME.STDIN, chunk)) await this.channel.send(frame);
        })().then(() => callback(), callback);
      },
      final: (callback) => { this.channel.send(encodeFrame(FRAME.STDIN)).then(() => callback(), callback); },
    });
    // Output after the command ended is not possible: the agent reports the exit last.
    this.stdin.on('error', () => undefined);
    this.done = this.pump();
    // A caller that only reads the output (never wait()) must not crash the process when the VM goes.
    this.done.catch(() => undefined);
  }

  /** Writes a chunk of output, waiting while the stream's reader lags (the guest then waits too, under vsock's credit). */
  private async write(stream: PassThrough, payload: Uint8Array): Promise<void> {
    if (stream.write(Buffer.from(payload))) return;
    // Until the consumer drains it — or the connection ends (abort, a VM that stopped).
    const socket = this.channel.socket;
    if (socket.destroyed) return;
    await new Promise<void>((resolve) => {
      const done = (): void => { stream.off('drain', done).off('close', done); socket.off('close', done); resolve(); };
      stream.on('drain', done).on('close', done);
      socket.on('close', done);
    });
  }

  private async pump(): Promise<{ exitCode: number; signal: number }> {
    try {
      for (;;) {
        const f = await this.channel.next();
        if (!f) throw new TypevisorError('AGENT_FAILED', 'the guest agent closed the connection before the command ended (did the guest stop?)');
        // Back-pressure: the next frame is read only once the consumer has taken this one.
        if (f.type === FRAME.STDOUT) await this.write(this.stdout, f.payload);
        else if (f.type === FRAME.STDERR) await this.write(this.stderr, f.payload);
        else if (f.type === FRAME.EXIT) return decodeExit(f.payload);
        else if (f.type === FRAME.FAILURE) throw new TypevisorError('AGENT_FAILED', `the guest agent could not run the command: ${Buffer.from(f.payload).toString()}`);
        else throw new TypevisorError('AGENT_FAILED', `the guest agent sent an unexpected frame '${f.type}'`);
      }
    } finally {
      this.stdout.end();
      this.stderr.end();
      this.channel.close();
    }
  }

  /** Resolves with the exit status once the command and all its output are done. */
  wait(): Promise<{ exitCode: number; signal: number }> {
    return this.done;
  }

  /** Ends the connection: the agent kills the command's process group; wait() rejects. */
  abort(): void {
    this.channel.close();
  }

  /** Sends a signal to the command's process group. */
  kill(signal: keyof typeof SIGNALS | number = 'SIGTERM'): void {
    const n = typeof signal === 'number' ? signal : SIGNALS[signal];
    if (n === undefined || !Number.isInteger(n) || n < 1 || n > 64) throw new TypevisorError('INVALID_ARGUMENT', `unknown signal ${String(signal)}`);
    void this.channel.send(encodeFrame(FRAME.KILL, Uint8Array.of(n))).catch(() => undefined);
  }
}

export class GuestAgent {
  constructor(readonly socketPath: string, readonly port = AGENT_PORT) {}

  /** Opens a connection to the agent through the VM's vsock socket. */
  private open(): Promise<AgentChannel> {
    return new Promise((resolve, reject) => {
      const socket = connect(this.socketPath);
      let line = '';
      const unavailable = (why: string): void => {
        socket.destroy();
        reject(new TypevisorError('AGENT_UNAVAILABLE', `the guest agent is not reachable through ${this.socketPath}: ${why}`));
      };
      const onData = (chunk: Buffer): void => {
        const nl = chunk.indexOf(0x0a);
        line += chunk.subarray(0, nl < 0 ? chunk.length : nl).toString('latin1');
        if (line.length > MAX_HANDSHAKE_LINE) { unavailable('the VM answered something other than "OK <port>"'); return; }
        if (nl < 0) return;
        if (!/^OK \d+$/.test(line)) { unavailable(`the VM answered '${line}' instead of "OK <port>"`); return; }
        socket.off('data', onData);
        socket.off('close', onClose);
        socket.off('error', onError);
        socket.setTimeout(0);
        const channel = new AgentChannel(socket);
        if (nl + 1 < chunk.length) channel.feed(chunk.subarray(nl + 1));
        resolve(channel);
      };
      // The VMM closes the connection when nobody listens on the guest port (the agent is not up yet).
      const onClose = (): void => unavailable('the guest refused the connection (is its agent running yet?)');
      const onError = (e: NodeJS.ErrnoException): void => unavailable(e.code === 'ENOENT' ? 'no such socket (is the VM running?)' : e.message);
      socket.on('data', onData);
      socket.once('close', onClose);
      socket.once('error', onError);
      socket.once('connect', () => socket.write(`CONNECT ${this.port}\n`));
      socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => unavailable(`no answer to CONNECT within ${HANDSHAKE_TIMEOUT_MS} ms`));
    });
  }

  /** Starts a command; its output streams while it runs. */
  async spawn(argv: readonly string[], opts: Omit<ExecOptions, 'onStdout' | 'onStderr' | 'timeoutMs'> = {}): Promise<GuestProcess> {
    const request: ExecRequest = { argv, ...(opts.env ? { env: opts.env } : {}), ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}) };
    let frame: Uint8Array;
    try {
      frame = encodeExec(request);
    } catch (e) {
      throw new TypevisorError('INVALID_ARGUMENT', e instanceof Error ? e.message : String(e));
    }
    if (frame.length > MAX_FRAME_PAYLOAD) throw new TypevisorError('INVALID_ARGUMENT', `the command and its environment are too long (${frame.length} bytes, at most ${MAX_FRAME_PAYLOAD})`);
    const channel = await this.open();
    await channel.send(frame);
    const proc = new GuestProcess(channel);
    const stdin = opts.stdin;
    if (stdin === undefined) proc.stdin.end();
    else if (typeof stdin === 'string' || stdin instanceof Uint8Array) proc.stdin.end(typeof stdin === 'string' ? Buffer.from(stdin) : stdin);
    else stdin.pipe(proc.stdin);
    return proc;
  }

  /** Runs a command to its end and returns its status and output. */
  async exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const proc = await this.spawn(argv, opts);
    const limit = opts.maxBuffer ?? DEFAULT_MAX_BUFFER;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let failLimit: (e: TypevisorError) => void = () => undefined;
    const overLimit = new Promise<never>((_, reject) => { failLimit = reject; });
    const sizes = { stdout: 0, stderr: 0 };
    const collect = (into: Buffer[], what: 'stdout' | 'stderr', c: Buffer): void => {
      into.push(c);
      sizes[what] += c.length;
      if (sizes[what] > limit) {
        proc.abort();
        failLimit(new TypevisorError('AGENT_FAILED', `the command's ${what} exceeded ${limit} bytes (maxBuffer) and it was killed — use spawn() to stream a large output`));
      }
    };
    proc.stdout.on('data', (c: Buffer) => { collect(out, 'stdout', c); opts.onStdout?.(c); });
    proc.stderr.on('data', (c: Buffer) => { collect(err, 'stderr', c); opts.onStderr?.(c); });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      if (opts.timeoutMs === undefined) return;
      timer = setTimeout(() => {
        // The signal, then the connection: a command whose agent is not reading frames dies with it.
        proc.kill('SIGKILL');
        proc.abort();
        reject(new TypevisorError('TIMEOUT', `the command ${argv.join(' ')} did not finish within ${opts.timeoutMs} ms (killed)`));
      }, opts.timeoutMs);
    });
    overLimit.catch(() => undefined);
    timedOut.catch(() => undefined);
    try {
      const status = await Promise.race([proc.wait(), timedOut, overLimit]);
      await Promise.all([ended(proc.stdout), ended(proc.stderr)]);
      return { ...status, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Writes a file in the guest (whole, or not at all: it is renamed into place when complete). */
  async writeFile(path: string, data: string | Uint8Array, opts: { mode?: number } = {}): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const channel = await this.open();
    try {
      try {
        await channel.send(encodeFrame(FRAME.WRITE_FILE, this.fields([['p', path], ['m', (opts.mode ?? 0o644).toString(8)]])));
        for (let at = 0; at < bytes.length; at += DATA_CHUNK) await channel.send(encodeFrame(FRAME.DATA, bytes.subarray(at, at + DATA_CHUNK)));
        await channel.send(encodeFrame(FRAME.DATA));
      } catch (e) {
        // The agent gave up early (no such directory…): its reason is waiting in the stream.
        await this.reply(channel, `write ${path}`);
        throw e;
      }
      const f = await this.reply(channel, `write ${path}`);
      if (f.type !== FRAME.OK) throw new TypevisorError('AGENT_FAILED', `the guest agent sent an unexpected frame '${f.type}'`);
      const written = decodeU64(f.payload);
      if (written !== BigInt(bytes.length)) throw new TypevisorError('AGENT_FAILED', `the guest wrote ${written} of ${bytes.length} bytes to ${path}`);
    } finally {
      channel.close();
    }
  }

  /** Reads a whole file from the guest (at most `maxBytes`, default 1 GiB: /dev/zero never ends). */
  async readFile(path: string, opts: { maxBytes?: number } = {}): Promise<Buffer> {
    const limit = opts.maxBytes ?? DEFAULT_MAX_FILE;
    const channel = await this.open();
    try {
      await channel.send(encodeFrame(FRAME.READ_FILE, this.fields([['p', path]])));
      const parts: Buffer[] = [];
      let total = 0;
      for (;;) {
        const f = await this.reply(channel, `read ${path}`);
        if (f.type !== FRAME.DATA) throw new TypevisorError('AGENT_FAILED', `the guest agent sent an unexpected frame '${f.type}'`);
        if (f.payload.length === 0) return Buffer.concat(parts);
        total += f.payload.length;
        if (total > limit) throw new TypevisorError('AGENT_FAILED', `${path} in the guest is larger than ${limit} bytes (maxBytes)`);
        parts.push(Buffer.from(f.payload));
      }
    } finally {
      channel.close();
    }
  }

  /** The agent's health: version, guest uptime, memory, process count — within `timeoutMs` (default 10 s). */
  async ping(timeoutMs = 10_000): Promise<AgentHealth> {
    const channel = await this.open();
    let expired = false;
    const timer = setTimeout(() => { expired = true; channel.close(); }, timeoutMs);
    try {
      await channel.send(encodeFrame(FRAME.PING));
      const f = await this.reply(channel, 'ping');
      if (f.type !== FRAME.PONG) throw new TypevisorError('AGENT_FAILED', `the guest agent sent an unexpected frame '${f.type}'`);
      return decodePong(f.payload);
    } catch (e) {
      if (expired) throw new TypevisorError('AGENT_UNAVAILABLE', `the guest agent did not answer a ping within ${timeoutMs} ms (is the guest paused or hung?)`);
      throw e;
    } finally {
      clearTimeout(timer);
      channel.close();
    }
  }

  /** Sets the guest's wall clock (CLOCK_REALTIME), by default to the host's. */
  async setClock(epochNs: bigint = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6))): Promise<void> {
    const channel = await this.open();
    try {
      await channel.send(encodeFrame(FRAME.SET_CLOCK, encodeU64(epochNs)));
      const f = await this.reply(channel, 'set the clock');
      if (f.type !== FRAME.OK) throw new TypevisorError('AGENT_FAILED', `the guest agent sent an unexpected frame '${f.type}'`);
    } finally {
      channel.close();
    }
  }

  /** Waits until the agent answers a ping (the guest is booting), at most `timeoutMs`. */
  async waitUntilReady(timeoutMs: number, isAlive: () => boolean = () => true): Promise<AgentHealth> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.ping(Math.max(1000, Math.min(10_000, deadline - Date.now())));
      } catch (e) {
        if (!(e instanceof TypevisorError) || e.code !== 'AGENT_UNAVAILABLE' || !isAlive()) throw e;
        if (Date.now() > deadline) throw new TypevisorError('TIMEOUT', `the guest agent did not answer within ${timeoutMs} ms (${e.message})`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  private fields(fields: [string, string][]): Uint8Array {
    try {
      return encodeFields(fields);
    } catch (e) {
      throw new TypevisorError('INVALID_ARGUMENT', e instanceof Error ? e.message : String(e));
    }
  }

  /** The agent's next frame; its failure frame as an error. */
  private async reply(channel: AgentChannel, what: string): Promise<Frame> {
    const f = await channel.next();
    if (!f) throw new TypevisorError('AGENT_FAILED', `the guest agent closed the connection during '${what}'`);
    if (f.type === FRAME.FAILURE) {
      const message = Buffer.from(f.payload).toString();
      throw new TypevisorError(/No such file/.test(message) ? 'NOT_FOUND' : 'AGENT_FAILED', `in the guest: ${message}`);
    }
    return f;
  }
}

function ended(stream: Readable): Promise<void> {
  return stream.readableEnded ? Promise.resolve() : new Promise((resolve) => stream.once('end', resolve));
}
