// the proxy's answer: server-sent events, error replies, the status answer
import { describe, expect, it } from 'vitest';

import {
  getStatus,
  INLINE_PATH,
  InlineError,
  parseStatus,
  postInline,
  readEvents,
  Requester
} from '../../src/completion/client';
import type { InlineRequest } from '../../src/completion/request';
import { InlineEvent, parseInlineEvent, SseParser } from '../../src/completion/sse';

const BODY: InlineRequest = { prefix: '', suffix: '', language: 'python', cells: [], stream: true };

/** A streamed Response delivering exactly these chunks. */
export function sseResponse(chunks: string[], status = 200): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) {
        controller.enqueue(encoder.encode(chunk));
      }
      controller.close();
    }
  });
  return new Response(body, { status, headers: { 'Content-Type': 'text/event-stream' } });
}

async function all(events: AsyncGenerator<InlineEvent>): Promise<InlineEvent[]> {
  const out: InlineEvent[] = [];
  for await (const event of events) {
    out.push(event);
  }
  return out;
}

describe('the SSE parser', () => {
  it('splits events on blank lines, whatever the line ends and chunk boundaries', () => {
    const parser = new SseParser();
    const stream =
      'data: {"a":1}\n\n: keep-alive\r\n\r\n' +
      'data: x\r\ndata: y\r\n\r\n' +
      'event: e\nid: 3\ndata:z\r\r';
    const got: string[] = [];
    for (const ch of stream) {
      got.push(...parser.feed(ch)); // one character at a time: every split point
    }
    got.push(...parser.end());
    expect(got).toEqual(['{"a":1}', 'x\ny', 'z']);
  });

  it('keeps a CR at the end of a chunk until the next one says whether LF follows', () => {
    const parser = new SseParser();
    expect(parser.feed('data: a\r')).toEqual([]);
    expect(parser.feed('\n\r')).toEqual([]);
    expect(parser.feed('\n')).toEqual(['a']);
  });

  it('drops an event cut off by the end of the stream', () => {
    const parser = new SseParser();
    expect(parser.feed('data: half')).toEqual([]);
    expect(parser.end()).toEqual([]);
    expect(parser.feed('\n\n')).toEqual([]);
  });
});

describe('an inline event', () => {
  it('reads text, done, model and cached', () => {
    expect(parseInlineEvent('{"text": "rev"}')).toEqual({ text: 'rev', done: false });
    const done = '{"done": true, "text": "revenue", "model": "m", "cached": false}';
    expect(parseInlineEvent(done)).toEqual({
      text: 'revenue',
      done: true,
      model: 'm',
      cached: false
    });
  });

  it('ignores what is not one, and reads an error event as the end', () => {
    expect(parseInlineEvent('[DONE]')).toBeNull();
    expect(parseInlineEvent('[1]')).toBeNull();
    expect(parseInlineEvent('{"text": 3}')).toBeNull();
    expect(parseInlineEvent('{"done": true}')).toEqual({ text: '', done: true });
    expect(parseInlineEvent('{"error": {"message": "upstream failed"}}')).toEqual({
      text: '',
      done: true,
      error: 'upstream failed'
    });
  });
});

describe('reading the answer', () => {
  it('yields the cumulative texts and stops at done, ignoring anything after', async () => {
    const response = sseResponse([
      'data: {"text": "re',
      'v"}\n\ndata: {"text": "reven',
      'ue"}\n\ndata: {"done": true, "text": "revenue", "model": "m", "cached": false}\n\n',
      'data: {"text": "after"}\n\n'
    ]);
    const events = await all(readEvents(response));
    expect(events.map(e => e.text)).toEqual(['rev', 'revenue', 'revenue']);
    expect(events[2].done).toBe(true);
  });

  it('reads a JSON (non-streaming) answer as one final event', async () => {
    const response = new Response('{"text": "revenue", "model": "m", "cached": true}', {
      headers: { 'Content-Type': 'application/json' }
    });
    expect(await all(readEvents(response))).toEqual([
      { text: 'revenue', done: true, model: 'm', cached: true }
    ]);
  });

  it('decodes a character split across network chunks', async () => {
    const bytes = new TextEncoder().encode('data: {"text": "é"}\n\n');
    const cut = bytes.indexOf(0xc3) + 1;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes.slice(0, cut));
        c.enqueue(bytes.slice(cut));
        c.close();
      }
    });
    const response = new Response(body, { headers: { 'Content-Type': 'text/event-stream' } });
    expect((await all(readEvents(response)))[0].text).toBe('é');
  });
});

describe('requests and error replies', () => {
  it('POSTs the body as JSON to rsql/inline with the signal', async () => {
    const seen: { path: string; init: RequestInit }[] = [];
    const request: Requester = async (path, init) => {
      seen.push({ path, init });
      return sseResponse([]);
    };
    const signal = new AbortController().signal;
    const body: InlineRequest = { ...BODY, prefix: 'sales.' };
    await postInline(request, body, signal);
    expect(seen[0].path).toBe(INLINE_PATH);
    expect(seen[0].init.method).toBe('POST');
    expect(seen[0].init.signal).toBe(signal);
    expect(JSON.parse(seen[0].init.body as string)).toEqual(body);
  });

  it("reads the contract's error shape, with Retry-After", async () => {
    const reply = new Response(
      JSON.stringify({
        error: { message: 'completions are off until 14:30', type: 'x', code: 'policy_window' }
      }),
      { status: 403 }
    );
    const request: Requester = async () => reply;
    const body = BODY;
    const error = await postInline(request, body, new AbortController().signal).catch(e => e);
    expect(error).toBeInstanceOf(InlineError);
    expect(error).toMatchObject({
      status: 403,
      code: 'policy_window',
      message: 'completions are off until 14:30'
    });

    const limited: Requester = async () =>
      new Response('<html>busy</html>', { status: 429, headers: { 'Retry-After': '12' } });
    const busy = await postInline(limited, body, new AbortController().signal).catch(e => e);
    expect(busy).toMatchObject({ status: 429, code: '', message: 'HTTP 429', retryAfterS: 12 });
  });

  it('reads the status answer defensively', async () => {
    const request: Requester = async (_path, init) => {
      expect(init.method).toBe('GET');
      return new Response(
        JSON.stringify({
          on: false,
          reason: 'window',
          message: 'off until 14:30',
          model: null,
          debounce_ms: 250
        })
      );
    };
    expect(await getStatus(request)).toEqual({
      on: false,
      reason: 'window',
      message: 'off until 14:30',
      model: null,
      tutor: null,
      courseLog: null
    });
    expect(parseStatus('nonsense')).toEqual({
      on: false,
      reason: null,
      message: '',
      model: null,
      tutor: null,
      courseLog: null
    });
    expect(parseStatus({ on: 'yes' }).on).toBe(false);
  });
});
