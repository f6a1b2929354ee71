// The guest agent's wire protocol (guest/README.md, "Guest agent protocol"): one operation per
// vsock connection, frames of { u8 type, u32 little-endian length, payload } both ways. Pure
// encoding and an incremental decoder that refuses what a hostile guest could use to exhaust the host.

export const AGENT_PORT = 52;
/** The agent refuses longer frames, and so do we. */
export const MAX_FRAME_PAYLOAD = 1 << 20;
const HEADER = 5;

/** Frame types. Host → agent: the operation (first frame), then stdin/data/kill. Agent → host: the rest. */
export const FRAME = {
  EXEC: 'x', WRITE_FILE: 'w', READ_FILE: 'r', PING: 'p', SET_CLOCK: 't',
  STDIN: 'I', KILL: 'K', DATA: 'D',
  STDOUT: 'O', STDERR: 'E', EXIT: 'X', FAILURE: 'F', PONG: 'P', OK: 'K',
} as const;

export interface Frame {
  type: string;
  payload: Uint8Array;
}

export function encodeFrame(type: string, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (type.length !== 1) throw new RangeError(`a frame type is one character, got '${type}'`);
  if (payload.length > MAX_FRAME_PAYLOAD) throw new RangeError(`a frame carries at most ${MAX_FRAME_PAYLOAD} bytes, got ${payload.length}`);
  const out = new Uint8Array(HEADER + payload.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setUint32(1, payload.length, true);
  out.set(payload, HEADER);
  return out;
}

/** Splits `data` into frames of at most MAX_FRAME_PAYLOAD bytes each. */
export function encodeChunked(type: string, data: Uint8Array): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += MAX_FRAME_PAYLOAD) frames.push(encodeFrame(type, data.subarray(at, at + MAX_FRAME_PAYLOAD)));
  return frames;
}

/** A request's fields: NUL-terminated strings, each a one-letter tag and its value. */
export function encodeFields(fields: readonly [tag: string, value: string][]): Uint8Array {
  const parts: Buffer[] = [];
  for (const [tag, value] of fields) {
    if (value.includes('\0')) throw new RangeError(`a ${tag === 'a' ? 'command argument' : 'request field'} cannot contain a NUL byte`);
    parts.push(Buffer.from(`${tag}${value}\0`, 'utf8'));
  }
  return new Uint8Array(Buffer.concat(parts));
}

export interface ExecRequest {
  argv: readonly string[];
  env?: Readonly<Record<string, string>>;
  cwd?: string;
}

export function encodeExec(r: ExecRequest): Uint8Array {
  if (r.argv.length === 0) throw new RangeError('exec needs a command');
  const fields: [string, string][] = r.argv.map((a) => ['a', a]);
  for (const [k, v] of Object.entries(r.env ?? {})) {
    if (k === '' || k.includes('=')) throw new RangeError(`'${k}' is not an environment variable name`);
    fields.push(['e', `${k}=${v}`]);
  }
  if (r.cwd !== undefined) fields.push(['d', r.cwd]);
  return encodeFrame(FRAME.EXEC, encodeFields(fields));
}

/** 'X' payload: the status a shell would report (code, or 128 + signal) and the signal (0 if none). */
export function decodeExit(payload: Uint8Array): { exitCode: number; signal: number } {
  if (payload.length !== 8) throw new AgentProtocolError(`an exit frame has 8 bytes, got ${payload.length}`);
  const v = new DataView(payload.buffer, payload.byteOffset, 8);
  return { exitCode: v.getInt32(0, true), signal: v.getInt32(4, true) };
}

export function encodeU64(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

export function decodeU64(payload: Uint8Array): bigint {
  if (payload.length !== 8) throw new AgentProtocolError(`expected 8 bytes, got ${payload.length}`);
  return new DataView(payload.buffer, payload.byteOffset, 8).getBigUint64(0, true);
}

export class AgentProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgentProtocolError';
  }
}

/** Reassembles frames from a byte stream cut anywhere. */
export class FrameDecoder {
  private buffered: Uint8Array[] = [];
  private bytes = 0;

  /** Adds bytes; returns every frame now complete. Throws AgentProtocolError on a frame too long to accept. */
  push(chunk: Uint8Array): Frame[] {
    this.buffered.push(chunk);
    this.bytes += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.bytes < HEADER) break;
      const head = this.peek(HEADER);
      const len = new DataView(head.buffer, head.byteOffset, HEADER).getUint32(1, true);
      if (len > MAX_FRAME_PAYLOAD) throw new AgentProtocolError(`the agent sent a ${len}-byte frame (at most ${MAX_FRAME_PAYLOAD})`);
      if (this.bytes < HEADER + len) break;
      const whole = this.take(HEADER + len);
      frames.push({ type: String.fromCharCode(whole[0]!), payload: whole.subarray(HEADER) });
    }
    return frames;
  }

  /** Bytes of an unfinished frame. */
  get pendingBytes(): number {
    return this.bytes;
  }

  private peek(n: number): Uint8Array {
    const first = this.buffered[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const merged = concat(this.buffered, this.bytes);
    this.buffered = [merged];
    return merged.subarray(0, n);
  }

  private take(n: number): Uint8Array {
    const merged = this.buffered.length === 1 ? this.buffered[0]! : concat(this.buffered, this.bytes);
    const out = merged.subarray(0, n);
    const rest = merged.subarray(n);
    this.buffered = rest.length > 0 ? [rest] : [];
    this.bytes = rest.length;
    return out;
  }
}

function concat(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** The agent's pong: key=value lines. */
export interface AgentHealth {
  version: number;
  uptimeS: number;
  memTotalKib: number;
  memFreeKib: number;
  procs: number;
}

export function decodePong(payload: Uint8Array): AgentHealth {
  const fields = new Map<string, number>();
  for (const line of Buffer.from(payload).toString('utf8').split('\n')) {
    const m = /^([a-z_]+)=(\d+)$/.exec(line);
    if (m) fields.set(m[1]!, Number(m[2]));
  }
  const get = (k: string): number => {
    const v = fields.get(k);
    if (v === undefined) throw new AgentProtocolError(`the agent's health report lacks ${k}`);
    return v;
  };
  return { version: get('version'), uptimeS: get('uptime_s'), memTotalKib: get('mem_total_kib'), memFreeKib: get('mem_free_kib'), procs: get('procs') };
}
