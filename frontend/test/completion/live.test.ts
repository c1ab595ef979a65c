// the live context kept after each execution: asked behind the cell, read at a keystroke
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { IInlineCompletionContext } from '@jupyterlab/completer';

import type { Requester } from '../../src/completion/client';
import { KernelContextFetcher } from '../../src/completion/kernelContext';
import {
  LiveContextCache,
  MessageLike,
  runsUserCode,
  WatchedKernel
} from '../../src/completion/liveContext';
import { RsqlInlineProvider } from '../../src/completion/provider';
import { CONTEXT, okReply } from './fakes';

type Slot<T> = (sender: unknown, args: T) => void;

class FakeSignal<T> {
  slots = new Set<Slot<T>>();
  connect(slot: Slot<T>): boolean {
    this.slots.add(slot);
    return true;
  }
  disconnect(slot: Slot<T>): boolean {
    return this.slots.delete(slot);
  }
  emit(args: T): void {
    this.slots.forEach(slot => slot(this, args));
  }
}

const OTHER = { frames: [{ name: 'costs', kind: 'pandas.DataFrame', columns: ['amount'] }] };

/** A kernel whose silent requests the test answers one by one, with signals to emit. */
function watchedKernel(language = 'python') {
  const answers: ((value: unknown) => void)[] = [];
  const sent: unknown[] = [];
  const kernel = {
    status: 'idle',
    clientId: 'this-page',
    info: Promise.resolve({ language_info: { name: language } }),
    anyMessage: new FakeSignal<{ msg: MessageLike; direction: string }>(),
    iopubMessage: new FakeSignal<MessageLike>(),
    statusChanged: new FakeSignal<string>(),
    disposed: new FakeSignal<void>(),
    requestExecute(content: unknown) {
      sent.push(content);
      const done = new Promise<{ content: unknown }>(resolve =>
        answers.push(value => resolve(okReply(value) as { content: unknown }))
      );
      return { done };
    }
  };
  const run = (silent = false) =>
    kernel.anyMessage.emit({
      msg: { header: { msg_type: 'execute_request' }, content: { code: 'x = 1', silent } },
      direction: 'send'
    });
  return { kernel: kernel as typeof kernel & WatchedKernel, answers, sent, run };
}

describe('the live context kept after each execution', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('asks right behind a cell the user runs and gives its answer at a keystroke, asking nothing', async () => {
    const { kernel, answers, sent, run } = watchedKernel();
    const live = new LiveContextCache();
    live.watch(kernel);
    run();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(1); // sent while the kernel is busy: it queues behind the cell
    answers.shift()!(CONTEXT);
    await vi.advanceTimersByTimeAsync(0);
    // an idle kernel, which could be asked: the kept answer, at once, and nothing is asked
    expect(kernel.status).toBe('idle');
    expect(await live.read(kernel, 'python', 60)).toEqual(CONTEXT);
    expect(sent).toHaveLength(1);
    kernel.status = 'busy'; // a busy one too
    expect(await live.read(kernel, 'python', 60)).toEqual(CONTEXT);
    expect(sent).toHaveLength(1);
  });

  it('waits for the answer after a running cell within the budget, else keeps the last one', async () => {
    const { kernel, answers, run } = watchedKernel();
    const live = new LiveContextCache();
    live.watch(kernel);
    run();
    await vi.advanceTimersByTimeAsync(0);
    answers.shift()!(CONTEXT);
    await vi.advanceTimersByTimeAsync(0);
    run(); // a cell that takes a while
    await vi.advanceTimersByTimeAsync(0);
    const stale = live.read(kernel, 'python', 60);
    await vi.advanceTimersByTimeAsync(60);
    expect(await stale).toEqual(CONTEXT); // the budget is over: the last answer, at once
    const fresh = live.read(kernel, 'python', 60);
    await vi.advanceTimersByTimeAsync(10);
    answers.shift()!(OTHER); // the cell ended within the budget: its answer
    expect(await fresh).toEqual(OTHER);
  });

  it('has one request out per kernel: cells run meanwhile get one more after it', async () => {
    const { kernel, answers, sent, run } = watchedKernel();
    const live = new LiveContextCache();
    live.watch(kernel);
    run();
    run();
    run();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(1);
    answers.shift()!(CONTEXT);
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(2);
    answers.shift()!(OTHER);
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(2);
    expect(await live.read(kernel, 'python', 60)).toEqual(OTHER);
  });

  it('ignores silent requests (its own), and asks after another client’s cell', async () => {
    const { kernel, sent, run } = watchedKernel();
    const live = new LiveContextCache();
    live.watch(kernel);
    run(true);
    const input = (session: string) =>
      kernel.iopubMessage.emit({
        header: { msg_type: 'execute_input' },
        parent_header: { session },
        content: {}
      });
    input('this-page'); // its own cell: already seen as it was sent
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(0);
    input('a-console-elsewhere');
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(1);
  });

  it('forgets what it kept when the kernel restarts, and asks as before', async () => {
    const { kernel, answers, sent, run } = watchedKernel();
    const live = new LiveContextCache();
    live.watch(kernel);
    run();
    await vi.advanceTimersByTimeAsync(0);
    answers.shift()!(CONTEXT);
    await vi.advanceTimersByTimeAsync(0);
    kernel.statusChanged.emit('restarting');
    const read = live.read(kernel, 'python', 60);
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(2); // nothing kept: the kernel is asked at the keystroke
    answers.shift()!(OTHER);
    expect(await read).toEqual(OTHER);
  });

  it('asks a kernel it does not watch at each keystroke, as before; never a non-Python one', async () => {
    const { kernel, answers, sent } = watchedKernel();
    const live = new LiveContextCache(new KernelContextFetcher());
    for (let i = 0; i < 2; i++) {
      const read = live.read(kernel, 'python', 60);
      await vi.advanceTimersByTimeAsync(0);
      answers.shift()!(CONTEXT);
      expect(await read).toEqual(CONTEXT);
    }
    expect(sent).toHaveLength(2);
    const r = watchedKernel('R');
    live.watch(r.kernel);
    r.run();
    await vi.advanceTimersByTimeAsync(0);
    expect(r.sent).toHaveLength(0);
    expect(await live.read(r.kernel, 'r', 60)).toBeNull();
  });

  it('stops listening when the kernel is disposed', () => {
    const { kernel } = watchedKernel();
    const live = new LiveContextCache();
    live.watch(kernel);
    expect(kernel.anyMessage.slots.size).toBe(1);
    kernel.disposed.emit();
    expect(kernel.anyMessage.slots.size).toBe(0);
    expect(live.isWatched(kernel)).toBe(false);
  });

  it('takes only execute requests that are not silent as the user’s code', () => {
    const msg = (msg_type: string, content: unknown) => ({ header: { msg_type }, content });
    expect(runsUserCode(msg('execute_request', { silent: false }))).toBe(true);
    expect(runsUserCode(msg('execute_request', { silent: true }))).toBe(false);
    expect(runsUserCode(msg('complete_request', {}))).toBe(false);
  });

  it('gives the provider the kept context at a pause while a cell runs, asking nothing then', async () => {
    const { kernel, answers, sent, run } = watchedKernel();
    const live = new LiveContextCache();
    live.watch(kernel);
    run(); // the cell that loads the frame
    await vi.advanceTimersByTimeAsync(0);
    answers.shift()!(CONTEXT);
    await vi.advanceTimersByTimeAsync(0);
    run(); // a long cell: the kernel is busy, its answer will come when it ends
    kernel.status = 'busy';
    await vi.advanceTimersByTimeAsync(0);
    const bodies: Record<string, unknown>[] = [];
    const request: Requester = async (_path, init) => {
      bodies.push(JSON.parse(init.body as string));
      return new Response(JSON.stringify({ text: 'revenue' }), {
        headers: { 'Content-Type': 'application/json' }
      });
    };
    const provider = new RsqlInlineProvider({ request, liveContext: live });
    const context = {
      session: { kernel, path: 'work/sales.ipynb' },
      widget: { content: { widgets: [], activeCellIndex: 0 } }
    } as unknown as IInlineCompletionContext;
    const fetched = provider.fetch({ text: 'sales.', offset: 6 }, context);
    await vi.advanceTimersByTimeAsync(250 + 60);
    expect(await fetched).toEqual({ items: [{ insertText: 'revenue' }] });
    expect(bodies[0].context).toEqual(CONTEXT);
    expect(sent).toHaveLength(2); // the one behind each cell; none at the pause
  });
});
