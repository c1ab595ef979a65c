/**
 * Server-sent events as the proxy streams them (contract section 1): an incremental parser fed
 * whatever chunks the network delivers, and the reading of one inline event.
 */

/** Splits a stream into events' data (the spec's line rules: \n, \r\n or \r; ":" comments). */
export class SseParser {
  /**
   * Feed a decoded chunk; returns the data of every event it completed. A chunk may end
   * anywhere, a CR at its end included (its LF may come in the next chunk).
   */
  feed(chunk: string): string[] {
    this._buffer += chunk;
    const events: string[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this._buffer);
      if (!match) {
        break;
      }
      // a CR at the very end may be the first half of a CRLF split across chunks
      if (match[0] === '\r' && match.index === this._buffer.length - 1) {
        break;
      }
      const line = this._buffer.slice(0, match.index);
      this._buffer = this._buffer.slice(match.index + match[0].length);
      this._line(line, events);
    }
    return events;
  }

  /**
   * The end of the stream: a CR held back by feed ends its line after all; an event without
   * its closing blank line is dropped, per the spec.
   */
  end(): string[] {
    const events: string[] = [];
    if (this._buffer.endsWith('\r')) {
      this._line(this._buffer.slice(0, -1), events);
    }
    this._buffer = '';
    this._data = [];
    return events;
  }

  private _line(line: string, events: string[]): void {
    if (line === '') {
      if (this._data.length) {
        events.push(this._data.join('\n'));
        this._data = [];
      }
      return;
    }
    if (line.startsWith(':')) {
      return; // a comment (keep-alive)
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    if (field === 'data') {
      this._data.push(value);
    }
    // event, id and retry carry nothing the inline stream uses
  }

  private _buffer = '';
  private _data: string[] = [];
}

/** One event of the inline stream: the whole completion so far (cumulative), or an error. */
export interface InlineEvent {
  readonly text: string;
  readonly done: boolean;
  readonly model?: string;
  readonly cached?: boolean;
  readonly error?: string;
}

/** An event's data read as the contract says, or null for anything else (ignored). */
export function parseInlineEvent(data: string): InlineEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return null;
  }
  const obj = value as Record<string, unknown>;
  if (obj.error !== undefined) {
    const err = obj.error as Record<string, unknown> | null;
    const message = err && typeof err.message === 'string' ? err.message : 'stream error';
    return { text: '', done: true, error: message };
  }
  const done = obj.done === true;
  if (typeof obj.text !== 'string') {
    return done ? { text: '', done } : null;
  }
  const event: { text: string; done: boolean; model?: string; cached?: boolean } = {
    text: obj.text,
    done
  };
  if (typeof obj.model === 'string') {
    event.model = obj.model;
  }
  if (typeof obj.cached === 'boolean') {
    event.cached = obj.cached;
  }
  return event;
}
