// the provider: debounce, supersession and abort, the request it sends, streaming, errors
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { IInlineCompletionContext } from '@jupyterlab/completer';

import type { Requester } from '../../src/completion/client';
import { RsqlInlineProvider } from '../../src/completion/provider';
import { DEFAULT_SETTINGS } from '../../src/completion/settings';
import { CONTEXT, fakeKernel, okReply } from './fakes';

interface Call {
  path: string;
  init: RequestInit;
  body: Record<string, unknown>;
  send(data: unknown): void;
  close(): void;
  aborted: boolean;
}

/**
 * A proxy that streams what the test sends, and errors the body when the request is aborted
 * (what fetch does), or answers every request with `reply`.
 */
function fakeProxy(reply?: () => Response) {
  const calls: Call[] = [];
  const request: Requester = async (path, init) => {
    if (reply) {
      const body = JSON.parse(init.body as string);
      calls.push({ path, init, body, send() {}, close() {}, aborted: false });
      return reply();
    }
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      }
    });
    const call: Call = {
      path,
      init,
      body: JSON.parse(init.body as string),
      send: data =>
        controller.enqueue(new TextEncoder().encode(`data: ${JSON.stringify(data)}\n\n`)),
      close: () => controller.close(),
      aborted: false
    };
    init.signal?.addEventListener('abort', () => {
      call.aborted = true;
      controller.error(new DOMException('The user aborted a request.', 'AbortError'));
    });
    calls.push(call);
    return new Response(body, { headers: { 'Content-Type': 'text/event-stream' } });
  };
  return { calls, request };
}

function notebookContext(kernel: unknown = null, cells: string[] = []): IInlineCompletionContext {
  const widgets = [...cells, 'current'].map(source => ({
    model: { type: 'code', sharedModel: { getSource: () => source } }
  }));
  return {
    widget: { content: { widgets, activeCellIndex: cells.length } },
    triggerKind: 1,
    session: { kernel, path: 'work/sales.ipynb' }
  } as unknown as IInlineCompletionContext;
}

const REQUEST = { text: 'sales.', offset: 6 };

async function collect(provider: RsqlInlineProvider, token: string): Promise<string[]> {
  const texts: string[] = [];
  for await (const update of provider.stream(token)) {
    texts.push(update.response.insertText);
  }
  return texts;
}

describe('the inline provider', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('debounces: a newer keystroke resolves the older fetch empty, one request', async () => {
    const proxy = fakeProxy();
    const provider = new RsqlInlineProvider({ request: proxy.request });
    const older = provider.fetch({ text: 'sales', offset: 5 }, notebookContext());
    await vi.advanceTimersByTimeAsync(100);
    const newer = provider.fetch(REQUEST, notebookContext());
    expect(await older).toEqual({ items: [] });
    await vi.advanceTimersByTimeAsync(249);
    expect(proxy.calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(proxy.calls).toHaveLength(1);
    expect(proxy.calls[0].body.prefix).toBe('sales.');
    proxy.calls[0].send({ done: true, text: 'revenue', model: 'm', cached: true });
    expect(await newer).toEqual({ items: [{ insertText: 'revenue' }] });
  });

  it('keeps what it showed last with the answer\'s request id: what an accepted cell names', async () => {
    const answer = () =>
      new Response(JSON.stringify({ text: 'revenue', model: 'fast', cached: false }), {
        headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'req-42' }
      });
    const proxy = fakeProxy(answer);
    const provider = new RsqlInlineProvider({ request: proxy.request });
    provider.setModel('status-model');
    expect(provider.shown).toBeNull();
    const list = provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    expect(await list).toEqual({ items: [{ insertText: 'revenue' }] });
    expect(provider.shown).toEqual({ text: 'revenue', requestId: 'req-42', model: 'fast' });
  });

  it('aborts the HTTP request of a superseded fetch and resolves it empty', async () => {
    const proxy = fakeProxy();
    const provider = new RsqlInlineProvider({ request: proxy.request });
    const older = provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    expect(proxy.calls).toHaveLength(1);
    const newer = provider.fetch({ text: 'sales.r', offset: 7 }, notebookContext());
    expect(proxy.calls[0].aborted).toBe(true);
    expect(await older).toEqual({ items: [] });
    await vi.advanceTimersByTimeAsync(250);
    proxy.calls[1].send({ done: true, text: 'evenue' });
    expect(await newer).toEqual({ items: [{ insertText: 'evenue' }] });
  });

  it('resolves with the first text as an incomplete item and streams the rest', async () => {
    const proxy = fakeProxy();
    const provider = new RsqlInlineProvider({ request: proxy.request });
    const fetched = provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    proxy.calls[0].send({ text: '' }); // nothing yet: no item for it
    proxy.calls[0].send({ text: 'rev' });
    const list = await fetched;
    expect(list.items).toHaveLength(1);
    const item = list.items[0];
    expect(item).toMatchObject({ insertText: 'rev', isIncomplete: true });
    expect(typeof item.token).toBe('string');
    const streamed = collect(provider, item.token!);
    proxy.calls[0].send({ text: 'reven' });
    proxy.calls[0].send({ text: 'reven' }); // the same text again: no update
    proxy.calls[0].send({ text: 'revenue' });
    proxy.calls[0].send({ done: true, text: 'revenue', model: 'm', cached: false });
    proxy.calls[0].send({ text: 'never read' });
    expect(await streamed).toEqual(['reven', 'revenue']);
    expect(provider.openStreams).toBe(0);
  });

  it('ends the stream of a superseded suggestion', async () => {
    const proxy = fakeProxy();
    const provider = new RsqlInlineProvider({ request: proxy.request });
    const fetched = provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    proxy.calls[0].send({ text: 'rev' });
    const token = (await fetched).items[0].token!;
    const streamed = collect(provider, token);
    void provider.fetch({ text: 'sales.x', offset: 7 }, notebookContext());
    expect(proxy.calls[0].aborted).toBe(true);
    expect(await streamed).toEqual([]);
  });

  it('drops an empty suggestion: "no suggestion" shows nothing', async () => {
    const proxy = fakeProxy();
    const provider = new RsqlInlineProvider({ request: proxy.request });
    const fetched = provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    proxy.calls[0].send({ text: '' });
    proxy.calls[0].send({ done: true, text: '', model: 'm', cached: false });
    expect(await fetched).toEqual({ items: [] });
  });

  it('passes markup in a completion as plain text, never interpreted', async () => {
    const markup = '<img src=x onerror="window.pwned=1">';
    const proxy = fakeProxy(
      () => new Response(JSON.stringify({ text: markup, model: 'm', cached: false }), {
        headers: { 'Content-Type': 'application/json' }
      })
    );
    const provider = new RsqlInlineProvider({ request: proxy.request });
    const fetched = provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    expect(await fetched).toEqual({ items: [{ insertText: markup }] });
  });

  it('sends the language, the previous cells, the notebook and the kernel context', async () => {
    const proxy = fakeProxy();
    const kernel = fakeKernel();
    const provider = new RsqlInlineProvider({ request: proxy.request });
    void provider.fetch(
      { text: 'x = 1\nsales.\n# end', offset: 12 },
      notebookContext(kernel.kernel, ['import pandas as pd', 'sales = load()'])
    );
    await vi.advanceTimersByTimeAsync(250);
    expect(kernel.requests).toHaveLength(1);
    expect(proxy.calls[0].body).toEqual({
      prefix: 'x = 1\nsales.',
      suffix: '\n# end',
      language: 'python',
      cells: ['import pandas as pd', 'sales = load()'],
      context: CONTEXT,
      notebook: 'work/sales.ipynb',
      stream: true
    });
  });

  it('sends without context for a busy kernel, at once', async () => {
    const proxy = fakeProxy();
    const kernel = fakeKernel({ status: 'busy' });
    const provider = new RsqlInlineProvider({ request: proxy.request });
    void provider.fetch(REQUEST, notebookContext(kernel.kernel));
    await vi.advanceTimersByTimeAsync(250);
    expect(proxy.calls).toHaveLength(1);
    expect(kernel.requests).toHaveLength(0);
    expect(proxy.calls[0].body.context).toBeUndefined();
  });

  it('sends without context after the budget when the kernel does not answer', async () => {
    const proxy = fakeProxy();
    const kernel = fakeKernel({ answer: 'later' });
    const provider = new RsqlInlineProvider({ request: proxy.request });
    void provider.fetch(REQUEST, notebookContext(kernel.kernel));
    await vi.advanceTimersByTimeAsync(250 + 59);
    expect(proxy.calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(proxy.calls).toHaveLength(1);
    expect(proxy.calls[0].body.context).toBeUndefined();
  });

  it('gives the context its whole budget when the kernel was slow to say its language', async () => {
    const proxy = fakeProxy();
    const kernel = fakeKernel({ answer: 'later', infoAfterMs: 40 });
    const provider = new RsqlInlineProvider({ request: proxy.request });
    void provider.fetch(REQUEST, notebookContext(kernel.kernel));
    await vi.advanceTimersByTimeAsync(250 + 40);
    expect(kernel.requests).toHaveLength(1); // asked once the language came, at 40 ms
    await vi.advanceTimersByTimeAsync(59);
    expect(proxy.calls).toHaveLength(0); // still within the context's own 60 ms
    kernel.pending[0](okReply());
    await vi.advanceTimersByTimeAsync(0);
    expect(proxy.calls).toHaveLength(1);
    expect(proxy.calls[0].body.context).toEqual(CONTEXT); // the live context, late as it was
  });

  it('asks the kernel nothing with liveContext off, and sends %%R cells as R', async () => {
    const proxy = fakeProxy();
    const kernel = fakeKernel();
    const provider = new RsqlInlineProvider({ request: proxy.request });
    provider.updateSettings({ ...DEFAULT_SETTINGS, liveContext: false, maxPreviousCells: 1 });
    const context = notebookContext(kernel.kernel, ['a', 'b']);
    void provider.fetch({ text: '%%R\ncars$', offset: 9 }, context);
    await vi.advanceTimersByTimeAsync(250);
    expect(kernel.requests).toHaveLength(0);
    expect(proxy.calls[0].body).toMatchObject({ language: 'r', cells: ['b'] });
    expect(proxy.calls[0].body.context).toBeUndefined();
  });

  it('sends nothing when turned off in the settings', async () => {
    const proxy = fakeProxy();
    const provider = new RsqlInlineProvider({ request: proxy.request });
    provider.updateSettings({ ...DEFAULT_SETTINGS, enabled: false });
    const fetched = provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(1000);
    expect(await fetched).toEqual({ items: [] });
    expect(proxy.calls).toHaveLength(0);
  });

  it('warns once on an error reply, tells the status, pauses until it says on', async () => {
    const warn = vi.fn();
    const onError = vi.fn();
    const refusal = () =>
      new Response(
        JSON.stringify({
          error: { message: 'completions are off until 14:30', type: 'x', code: 'policy_window' }
        }),
        { status: 403 }
      );
    const proxy = fakeProxy(refusal);
    const provider = new RsqlInlineProvider({ request: proxy.request, warn, onError });
    const fetched = provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    expect(await fetched).toEqual({ items: [] });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0][0]).toContain('403 policy_window');
    expect(warn.mock.calls[0][0]).toContain('completions are off until 14:30');
    expect(onError).toHaveBeenCalledTimes(1);
    // paused: typing on sends nothing
    void provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(1000);
    expect(proxy.calls).toHaveLength(1);
    provider.setAvailable(true);
    void provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    expect(proxy.calls).toHaveLength(2);
    expect(warn).toHaveBeenCalledTimes(1); // the same warning is not repeated per keystroke
  });

  it('waits Retry-After after a 429', async () => {
    let now = 0;
    const proxy = fakeProxy(
      () =>
        new Response(
          JSON.stringify({ error: { message: 'slow down', type: 'x', code: 'rate_limited' } }),
          { status: 429, headers: { 'Retry-After': '20' } }
        )
    );
    const provider = new RsqlInlineProvider({
      request: proxy.request,
      warn: () => undefined,
      now: () => now
    });
    void provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    expect(proxy.calls).toHaveLength(1);
    now = 19_000;
    void provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    expect(proxy.calls).toHaveLength(1);
    provider.setAvailable(true); // the status says on: a 429's wait still holds
    void provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    expect(proxy.calls).toHaveLength(1);
    now = 20_001;
    void provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    expect(proxy.calls).toHaveLength(2);
  });

  it('warns, without throwing, when the network fails', async () => {
    const warn = vi.fn();
    const request: Requester = async () => {
      throw new TypeError('Failed to fetch');
    };
    const provider = new RsqlInlineProvider({ request, warn });
    const fetched = provider.fetch(REQUEST, notebookContext());
    await vi.advanceTimersByTimeAsync(250);
    expect(await fetched).toEqual({ items: [] });
    expect(warn.mock.calls[0][0]).toContain('Failed to fetch');
  });

  it('is on by default in the inline completer, with its own debounce', () => {
    const provider = new RsqlInlineProvider({ request: fakeProxy().request });
    expect(provider.schema.default).toMatchObject({ enabled: true, debouncerDelay: 0 });
    expect(provider.identifier).toBe('@rsql-assistant/jupyterlab:inline');
  });
});
