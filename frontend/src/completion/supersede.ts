/**
 * Debouncing and cancelling by supersession: the inline completer calls fetch again on every
 * keystroke, and only the newest call matters. Each call takes a new signal, which aborts the
 * one before it: the older call's wait resolves false and its HTTP request is aborted.
 */

/** Hands out one live AbortSignal at a time. */
export class Superseder {
  /** A signal for a new call; the previous call's signal is aborted. */
  next(): AbortSignal {
    this._current?.abort();
    this._current = new AbortController();
    return this._current.signal;
  }

  /** Abort the current call, if any (the provider turned off, the page going away). */
  abort(): void {
    this._current?.abort();
    this._current = null;
  }

  private _current: AbortController | null = null;
}

/** Wait `ms`; true when the wait ran out, false as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) {
    return Promise.resolve(false);
  }
  if (ms <= 0) {
    return Promise.resolve(true);
  }
  return new Promise(resolve => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The error an aborted fetch rejects with (a DOMException named AbortError). */
export function isAbort(error: unknown): boolean {
  return (
    !!error &&
    typeof error === 'object' &&
    'name' in error &&
    (error as { name: unknown }).name === 'AbortError'
  );
}
