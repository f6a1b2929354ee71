// The default guest's command protocol (guest/README.md): argv on the kernel command line, markers on the console.

export const BEGIN_MARKER = 'TYPEVISOR-BEGIN';
export const EXIT_MARKER = 'TYPEVISOR-EXIT';
export const READY_MARKER = 'TYPEVISOR-READY';
/** Linux's x86 COMMAND_LINE_SIZE is 2048 bytes; leave room for Typevisor's own options. */
export const MAX_ENCODED_COMMAND = 1200;

/** `typevisor.cmd=<base64 of argv joined by NUL>`: survives spaces, quotes and newlines in arguments. */
export function encodeCommand(argv: readonly string[]): string {
  if (argv.length === 0) throw new Error('empty command');
  const encoded = Buffer.from(argv.join('\0'), 'utf8').toString('base64');
  if (encoded.length > MAX_ENCODED_COMMAND) {
    throw new RangeError(`the command is too long for the kernel command line (${encoded.length} encoded bytes, at most ${MAX_ENCODED_COMMAND})`);
  }
  return `typevisor.cmd=${encoded}`;
}

export type ConsoleEvent =
  | { kind: 'boot-log'; text: string }
  | { kind: 'output'; text: string }
  | { kind: 'exit'; status: number };

/**
 * Splits the guest console into the boot log (before BEGIN), the command's output (between the
 * markers, with the tty's CRLF turned back into LF) and its exit status. Feed it chunks as they come.
 */
export class CommandConsoleParser {
  private phase: 'boot' | 'command' | 'done' = 'boot';
  private pending = '';

  push(chunk: string): ConsoleEvent[] {
    this.pending += chunk;
    const events: ConsoleEvent[] = [];
    for (;;) {
      const nl = this.pending.indexOf('\n');
      if (nl < 0) break;
      const line = this.pending.slice(0, nl + 1);
      this.pending = this.pending.slice(nl + 1);
      this.line(line, events);
    }
    // Pass on a partial line of output at once (a prompt, progress), keeping back only a tail
    // that could still become the exit marker.
    if (this.phase === 'command' && this.pending !== '') {
      const keep = markerPrefixLength(this.pending);
      const flush = this.pending.slice(0, this.pending.length - keep).replace(/\r/g, '');
      this.pending = this.pending.slice(this.pending.length - keep);
      if (flush !== '') events.push({ kind: 'output', text: flush });
    }
    return events;
  }

  private line(raw: string, events: ConsoleEvent[]): void {
    const text = raw.replace(/\r*\n$/, '\n').replace(/^\r+/, '');
    const bare = text.trimEnd();
    if (this.phase === 'boot') {
      if (bare === BEGIN_MARKER) this.phase = 'command';
      else if (bare.startsWith(`${EXIT_MARKER} `)) this.exit(bare, events);
      else events.push({ kind: 'boot-log', text });
      return;
    }
    if (this.phase === 'command') {
      const at = bare.indexOf(EXIT_MARKER);
      if (at >= 0 && /^TYPEVISOR-EXIT \d+$/.test(bare.slice(at))) {
        if (at > 0) events.push({ kind: 'output', text: bare.slice(0, at) });
        this.exit(bare.slice(at), events);
        return;
      }
      events.push({ kind: 'output', text });
    }
  }

  private exit(line: string, events: ConsoleEvent[]): void {
    this.phase = 'done';
    events.push({ kind: 'exit', status: Number(line.slice(EXIT_MARKER.length + 1)) & 0xff });
  }
}

/** Length of the longest tail of `text` that is, or may still become, an exit-marker line. */
function markerPrefixLength(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const tail = text.slice(i);
    if (EXIT_MARKER.startsWith(tail) || /^TYPEVISOR-EXIT \d{0,3}\r?$/.test(tail)) return tail.length;
  }
  return 0;
}
