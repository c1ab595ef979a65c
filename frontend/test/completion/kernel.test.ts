// the kernel's live context: bounded in time, one request per kernel, skipped when it cannot help
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import {
  CONTEXT_EXPRESSION,
  ContextKernel,
  KernelContextFetcher,
  kernelLanguage,
  readContext
} from '../../src/completion/kernelContext';
import { isAbort, sleep, Superseder } from '../../src/completion/supersede';
import { CONTEXT, fakeKernel, okReply } from './fakes';

describe('reading the reply', () => {
  it('takes the application/json object of the rsql expression', () => {
    expect(readContext(okReply().content)).toEqual(CONTEXT);
  });

  it('gives null for an error, a missing expression, or something else than an object', () => {
    expect(readContext({ status: 'error', ename: 'X' })).toBeNull();
    expect(readContext({ status: 'ok', user_expressions: {} })).toBeNull();
    expect(
      readContext({
        status: 'ok',
        user_expressions: { rsql: { status: 'error', ename: 'ModuleNotFoundError' } }
      })
    ).toBeNull();
    expect(readContext(okReply([1, 2]).content)).toBeNull();
    expect(readContext(okReply('text').content)).toBeNull();
    expect(readContext(okReply({ huge: 'x'.repeat(300_000) }).content)).toBeNull();
    expect(readContext(null)).toBeNull();
  });
});

describe('the context request', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('is one silent execute request with the contract expression, no history', async () => {
    const { kernel, requests } = fakeKernel();
    const got = await new KernelContextFetcher().fetch(kernel, 'python', 60);
    expect(got).toEqual(CONTEXT);
    expect(requests).toEqual([
      {
        code: '',
        silent: true,
        store_history: false,
        allow_stdin: false,
        stop_on_error: false,
        user_expressions: { rsql: CONTEXT_EXPRESSION }
      }
    ]);
  });

  it('is skipped at once for a busy kernel, a non-Python kernel, or none', async () => {
    const fetcher = new KernelContextFetcher();
    const busy = fakeKernel({ status: 'busy' });
    expect(await fetcher.fetch(busy.kernel, 'python', 60)).toBeNull();
    const r = fakeKernel({ language: 'R' });
    expect(await fetcher.fetch(r.kernel, 'r', 60)).toBeNull();
    expect(await fetcher.fetch(null, 'python', 60)).toBeNull();
    const off = fakeKernel();
    expect(await fetcher.fetch(off.kernel, 'python', 0)).toBeNull(); // budget 0: off
    expect(busy.requests.length + r.requests.length + off.requests.length).toBe(0);
  });

  it('resolves without context when the kernel does not answer within the budget', async () => {
    const { kernel, pending } = fakeKernel({ answer: 'later' });
    const fetcher = new KernelContextFetcher();
    const result = fetcher.fetch(kernel, 'python', 60);
    await vi.advanceTimersByTimeAsync(60);
    expect(await result).toBeNull();
    expect(pending).toHaveLength(1);
  });

  it('never has two requests outstanding on one kernel', async () => {
    const { kernel, requests, pending } = fakeKernel({ answer: 'later' });
    const fetcher = new KernelContextFetcher();
    const first = fetcher.fetch(kernel, 'python', 60);
    await vi.advanceTimersByTimeAsync(60);
    expect(await first).toBeNull();
    // the first is still outstanding (the kernel is slow): the next keystroke does not queue one
    expect(await fetcher.fetch(kernel, 'python', 60)).toBeNull();
    expect(requests).toHaveLength(1);
    pending[0](okReply());
    await vi.advanceTimersByTimeAsync(0);
    expect(fetcher.isOutstanding(kernel)).toBe(false);
    // answered: the kernel may be asked again
    const third = fetcher.fetch(kernel, 'python', 60);
    pending[1](okReply());
    expect(await third).toEqual(CONTEXT);
    expect(requests).toHaveLength(2);
  });

  it('takes a request outstanding for 30 s as lost (a restarted kernel)', async () => {
    let now = 0;
    const { kernel, requests } = fakeKernel({ answer: 'later' });
    const fetcher = new KernelContextFetcher(() => now);
    void fetcher.fetch(kernel, 'python', 60);
    now = 31_000;
    void fetcher.fetch(kernel, 'python', 60);
    expect(requests).toHaveLength(2);
  });

  it('gives null when the kernel connection throws (disposed)', async () => {
    const kernel = {
      status: 'idle',
      info: Promise.resolve({ language_info: { name: 'python' } }),
      requestExecute: () => {
        throw new Error('Kernel is dead');
      }
    } as ContextKernel;
    expect(await new KernelContextFetcher().fetch(kernel, 'python', 60)).toBeNull();
  });

  it("reads the kernel's language, or null when it does not say in time", async () => {
    expect(await kernelLanguage(fakeKernel({ language: 'R' }).kernel, 60)).toBe('R');
    const never = new Promise<never>(() => undefined);
    const silent = { ...fakeKernel().kernel, info: never } as ContextKernel;
    const language = kernelLanguage(silent, 60);
    await vi.advanceTimersByTimeAsync(60);
    expect(await language).toBeNull();
    expect(await kernelLanguage(null, 60)).toBeNull();
  });
});

describe('supersession', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('aborts the previous signal when a newer call comes', () => {
    const s = new Superseder();
    const first = s.next();
    const second = s.next();
    expect(first.aborted).toBe(true);
    expect(second.aborted).toBe(false);
    s.abort();
    expect(second.aborted).toBe(true);
  });

  it('ends a wait early and false when its signal aborts, true when it runs out', async () => {
    const s = new Superseder();
    const older = sleep(250, s.next());
    await vi.advanceTimersByTimeAsync(100);
    const newer = sleep(250, s.next());
    expect(await older).toBe(false);
    await vi.advanceTimersByTimeAsync(250);
    expect(await newer).toBe(true);
    expect(await sleep(0, new AbortController().signal)).toBe(true);
    const aborted = new AbortController();
    aborted.abort();
    expect(await sleep(10, aborted.signal)).toBe(false);
  });

  it('knows an abort error', () => {
    expect(isAbort(new DOMException('x', 'AbortError'))).toBe(true);
    expect(isAbort(new Error('x'))).toBe(false);
    expect(isAbort(null)).toBe(false);
  });
});
