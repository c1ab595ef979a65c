/**
 * The kernel's live context, kept by the kernel's own executions (issue 55, item 5), so a
 * keystroke never waits on the kernel and the first pause after a cell ran knows what it made.
 *
 * Right behind every execute request that runs user code, this client's (seen as it is sent) or
 * another client's (seen by its `execute_input`), one silent context request
 * (kernelContext.ts) is sent to the same kernel: the kernel queues it behind that cell, so its
 * answer comes the moment the cell ends. The answer is kept per kernel, and a keystroke reads
 * it: when the request after a running cell is still out, it waits for it within the same
 * budget as before (contextTimeoutMs) and otherwise takes the last answer. One such request is
 * out per kernel at a time; executions sent meanwhile ("run all") get one more after it.
 *
 * A kernel that is not watched (no notebook panel of this page holds it) is asked at each
 * keystroke as before; so is a watched kernel with nothing kept yet (its cells ran before this
 * page opened, it restarted, or its last answer was lost: an error aborts what was queued
 * behind the failing cell). Only names and columns come back (rsql_magic/context/inline.py).
 */

import {
  ContextKernel,
  KernelContext,
  KernelContextFetcher,
  kernelLanguage,
  within
} from './kernelContext';

/** The part of a Lumino signal used here (structural, so tests fake it). */
export interface SignalLike<T> {
  connect(slot: (sender: unknown, args: T) => void): boolean;
  disconnect(slot: (sender: unknown, args: T) => void): boolean;
}

/** The part of a kernel message read here. */
export interface MessageLike {
  readonly header: { readonly msg_type: string };
  readonly parent_header?: { readonly session?: string } | Record<string, never>;
  readonly content?: unknown;
}

/** The part of JupyterLab's IKernelConnection a watched kernel has. */
export interface WatchedKernel extends ContextKernel {
  readonly clientId: string;
  readonly anyMessage: SignalLike<{ readonly msg: MessageLike; readonly direction: string }>;
  readonly iopubMessage: SignalLike<MessageLike>;
  readonly statusChanged: SignalLike<string>;
  readonly disposed: SignalLike<void>;
}

// a kernel in these states has lost (or is losing) its namespace: what was kept is forgotten
const FORGET_ON = new Set(['restarting', 'autorestarting', 'starting', 'dead']);
// the language the context request is for: its info usually is known by the first execute
const LANGUAGE_WAIT_MS = 5_000;

interface Kept {
  // the last answer, or null before the first one
  value: KernelContext | null;
  // the request after the newest execution, while it is out
  pending: Promise<KernelContext | null> | null;
  // an execution was sent while `pending` was out: ask once more when it is in
  again: boolean;
  // the last request came back empty (an aborted or failed one): the next keystroke asks
  lost: boolean;
}

export class LiveContextCache {
  constructor(private readonly _fetcher: KernelContextFetcher = new KernelContextFetcher()) {}

  /** Keep `kernel`'s context from now on: ask after each of its executions. */
  watch(kernel: WatchedKernel | null | undefined): void {
    if (!kernel || this._watched.has(kernel)) {
      return;
    }
    const onAny = (_: unknown, args: { msg: MessageLike; direction: string }) => {
      if (args.direction === 'send' && runsUserCode(args.msg)) {
        this.executed(kernel);
      }
    };
    const onIopub = (_: unknown, msg: MessageLike) => {
      // another client's cell (its own requests are seen as they are sent, above)
      const session = (msg.parent_header as { session?: string } | undefined)?.session;
      if (msg.header.msg_type === 'execute_input' && session && session !== kernel.clientId) {
        this.executed(kernel);
      }
    };
    const onStatus = (_: unknown, status: string) => {
      if (FORGET_ON.has(status)) {
        this._kept.delete(kernel);
      }
    };
    const onDisposed = () => {
      kernel.anyMessage.disconnect(onAny);
      kernel.iopubMessage.disconnect(onIopub);
      kernel.statusChanged.disconnect(onStatus);
      kernel.disposed.disconnect(onDisposed);
      this._kept.delete(kernel);
      this._watched.delete(kernel);
    };
    kernel.anyMessage.connect(onAny);
    kernel.iopubMessage.connect(onIopub);
    kernel.statusChanged.connect(onStatus);
    kernel.disposed.connect(onDisposed);
    this._watched.add(kernel);
  }

  isWatched(kernel: ContextKernel): boolean {
    return this._watched.has(kernel);
  }

  /** An execution was sent to `kernel`: ask for its context behind it (once per kernel). */
  executed(kernel: ContextKernel): void {
    let kept = this._kept.get(kernel);
    if (!kept) {
      kept = { value: null, pending: null, again: false, lost: false };
      this._kept.set(kernel, kept);
    }
    if (kept.pending) {
      kept.again = true;
      return;
    }
    const entry = kept;
    entry.pending = this._ask(kernel).then(value => {
      if (this._kept.get(kernel) !== entry) {
        return value; // forgotten meanwhile (a restart): this answer is of the old namespace
      }
      entry.pending = null;
      entry.lost = value === null;
      if (value !== null) {
        entry.value = value;
      }
      if (entry.again) {
        entry.again = false;
        this.executed(kernel);
      }
      return value;
    });
  }

  /**
   * The context for a keystroke within `budgetMs`: the kept one (the request after a running
   * cell waited for within the budget), or, with nothing kept, the kernel asked as before.
   */
  async read(
    kernel: ContextKernel | null | undefined,
    language: string | null,
    budgetMs: number
  ): Promise<KernelContext | null> {
    if (!kernel || language !== 'python') {
      return null;
    }
    const kept = this._watched.has(kernel) ? this._kept.get(kernel) : undefined;
    if (kept?.pending) {
      return (await within(kept.pending, budgetMs)) ?? kept.value;
    }
    if (kept?.value && !kept.lost) {
      return kept.value;
    }
    const asked = await this._fetcher.fetch(kernel, language, budgetMs);
    if (asked !== null && this._watched.has(kernel)) {
      const now = this._kept.get(kernel);
      if (!now) {
        this._kept.set(kernel, { value: asked, pending: null, again: false, lost: false });
      } else if (!now.pending) {
        now.value = asked;
        now.lost = false;
      }
    }
    return asked ?? kept?.value ?? null;
  }

  private async _ask(kernel: ContextKernel): Promise<KernelContext | null> {
    // only a Python kernel has rsql_magic to answer; its language is known by now, mostly
    const language = await kernelLanguage(kernel, LANGUAGE_WAIT_MS);
    if (language?.toLowerCase() !== 'python') {
      return null;
    }
    return (await this._fetcher.request(kernel)) ?? null;
  }

  private readonly _kept = new WeakMap<ContextKernel, Kept>();
  private readonly _watched = new WeakSet<ContextKernel>();
}

/** An execute request that runs the user's code: not silent (ours and other tools' are). */
export function runsUserCode(msg: MessageLike): boolean {
  if (msg.header.msg_type !== 'execute_request') {
    return false;
  }
  const content = msg.content as { silent?: unknown } | undefined;
  return content?.silent !== true;
}
