/**
 * The kernel's live context (contract section 2): one silent execute request whose
 * user_expressions call rsql_magic.context.inline in a Python kernel. It must never hold the
 * editor up: a kernel that is busy or not Python is skipped at once, the round trip has a budget
 * (contextTimeoutMs), and one kernel never has more than one of these requests outstanding, so
 * a slow kernel is not sent a queue of them.
 */

/** What the kernel answered: names, columns, dtypes and row counts, passed through as is. */
export type KernelContext = Record<string, unknown>;

/** The part of JupyterLab's IKernelConnection used here (structural, so tests fake it). */
export interface ContextKernel {
  readonly status: string;
  readonly info: Promise<{ readonly language_info: { readonly name: string } }>;
  requestExecute(
    content: {
      code: string;
      silent: boolean;
      store_history: boolean;
      allow_stdin: boolean;
      stop_on_error: boolean;
      user_expressions: Record<string, string>;
    },
    disposeOnDone?: boolean
  ): { readonly done: Promise<{ readonly content: unknown }> };
}

export const CONTEXT_EXPRESSION =
  "__import__('rsql_magic.context.inline', fromlist=['frontend_context'])" +
  '.frontend_context(get_ipython())';

// the kernel side bounds its answer; this only guards the request body against a broken one
const MAX_CONTEXT_CHARS = 200_000;
// a request outstanding this long is taken as lost (a kernel that died or restarted)
const STALE_MS = 30_000;

/** The context object out of an execute reply, or null when there is none to use. */
export function readContext(content: unknown): KernelContext | null {
  if (!content || typeof content !== 'object') {
    return null;
  }
  const reply = content as { status?: unknown; user_expressions?: unknown };
  if (reply.status !== 'ok' || !reply.user_expressions) {
    return null;
  }
  const expr = (reply.user_expressions as Record<string, unknown>).rsql as
    | { status?: unknown; data?: Record<string, unknown> }
    | undefined;
  if (!expr || expr.status !== 'ok' || !expr.data) {
    return null;
  }
  const value = expr.data['application/json'];
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return null;
  }
  try {
    if (JSON.stringify(value).length > MAX_CONTEXT_CHARS) {
      return null;
    }
  } catch {
    return null;
  }
  return value as KernelContext;
}

/** Resolves `promise`, or null after `ms` (or at once when `ms` is 0 or less). */
export function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  if (ms <= 0) {
    return Promise.resolve(null);
  }
  return new Promise(resolve => {
    const timer = setTimeout(() => resolve(null), ms);
    promise.then(
      value => {
        clearTimeout(timer);
        resolve(value);
      },
      () => {
        clearTimeout(timer);
        resolve(null);
      }
    );
  });
}

/** The kernel's language, if it says within `ms` (its info is known once it has connected). */
export async function kernelLanguage(
  kernel: ContextKernel | null | undefined,
  ms: number
): Promise<string | null> {
  if (!kernel) {
    return null;
  }
  let info: Promise<{ readonly language_info: { readonly name: string } }>;
  try {
    info = kernel.info;
  } catch {
    return null;
  }
  const reply = await within(info, Math.max(ms, 1));
  const name = reply?.language_info?.name;
  return typeof name === 'string' ? name : null;
}

export class KernelContextFetcher {
  constructor(private readonly _now: () => number = () => Date.now()) {}

  /**
   * The context of `kernel` within `timeoutMs`, or null: when the kernel is not idle, not
   * Python, already has a request outstanding, errs, or does not answer in time.
   */
  async fetch(
    kernel: ContextKernel | null | undefined,
    language: string | null,
    timeoutMs: number
  ): Promise<KernelContext | null> {
    if (!kernel || timeoutMs <= 0 || language !== 'python' || kernel.status !== 'idle') {
      return null;
    }
    const started = this._outstanding.get(kernel);
    if (started !== undefined && this._now() - started < STALE_MS) {
      return null;
    }
    const settled = this.request(kernel);
    if (settled === null) {
      return null;
    }
    this._outstanding.set(kernel, this._now());
    // the budget ends the wait, not the request: it stays outstanding until its reply comes
    void settled.finally(() => {
      this._outstanding.delete(kernel);
    });
    return within(settled, timeoutMs);
  }

  /**
   * Send the context request now, whatever the kernel is doing (a busy kernel queues it behind
   * what it runs), and resolve with its answer, or null; null at once for a dead kernel.
   */
  request(kernel: ContextKernel): Promise<KernelContext | null> | null {
    let done: Promise<{ readonly content: unknown }>;
    try {
      done = kernel.requestExecute(
        {
          code: '',
          // silent: no execution count, no outputs, nothing in the history
          silent: true,
          store_history: false,
          allow_stdin: false,
          // an error here must not abort cells the user queued after it
          stop_on_error: false,
          user_expressions: { rsql: CONTEXT_EXPRESSION }
        },
        true
      ).done;
    } catch {
      return null; // a disposed or dead kernel
    }
    return done.then(
      reply => readContext(reply.content),
      () => null
    );
  }

  /** Whether `kernel` has a context request outstanding (for tests and the status tooltip). */
  isOutstanding(kernel: ContextKernel): boolean {
    return this._outstanding.has(kernel);
  }

  private _outstanding = new WeakMap<ContextKernel, number>();
}
