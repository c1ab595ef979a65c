/**
 * rsql-assistant's inline completion provider for JupyterLab's inline completer.
 *
 * The completer calls fetch on every keystroke: each call supersedes the one before it (its
 * debounce wait ends empty, its HTTP request and stream are aborted). A call waits
 * `debounceMs`, collects the cell's text around the cursor, its language, the previous cells
 * and the kernel's live context (kept after each execution, liveContext.ts; asked within
 * `contextTimeoutMs` when none is kept), then POSTs to {proxy}inline and
 * streams the answer: fetch resolves with the first text, and stream(token) yields the rest
 * (the proxy's events carry the whole text so far, which is what the completer wants).
 *
 * fetch waits for the first non-empty text instead of resolving with an empty, incomplete item
 * at once: an empty suggestion would still be "active" and take the Tab key from the user
 * (the completer's accept shortcut), and "no suggestion" answers must show nothing.
 */

import type {
  CompletionHandler,
  IInlineCompletionContext,
  IInlineCompletionItem,
  IInlineCompletionList,
  IInlineCompletionProvider
} from '@jupyterlab/completer';

import { InlineError, postInline, readEvents, Requester } from './client';
import { ContextKernel, KernelContextFetcher, kernelLanguage } from './kernelContext';
import { LiveContextCache } from './liveContext';
import { cellLanguage, mimeLanguage } from './language';
import { metadataLanguage, previousCells } from './notebook';
import { buildRequest } from './request';
import { CompletionSettings, DEFAULT_SETTINGS } from './settings';
import type { InlineEvent } from './sse';
import { isAbort, sleep, Superseder } from './supersede';

export const PROVIDER_ID = '@rsql-assistant/jupyterlab:inline';

const EMPTY: IInlineCompletionList = { items: [] };
// a 429 without Retry-After: wait this long before asking again
const DEFAULT_RETRY_S = 30;
const MAX_RETRY_S = 600;
// the same warning at most once in this time (every keystroke would repeat it)
const WARN_EVERY_MS = 60_000;

interface OpenStream {
  readonly events: AsyncGenerator<InlineEvent>;
  readonly signal: AbortSignal;
  readonly requestId: string | null;
  text: string;
}

/** The suggestion shown last, and the answer it came from: what an accept inserts, and what
 * the cell's provenance mark names (issue 75). */
export interface ShownCompletion {
  readonly text: string;
  readonly requestId: string | null;
  readonly model: string | null;
}

export interface ProviderOptions {
  readonly request: Requester;
  readonly contextFetcher?: KernelContextFetcher;
  /** the kernels' context kept after each execution (liveContext.ts); one is made if not given */
  readonly liveContext?: LiveContextCache;
  /** told of every error reply (the status item shows it and asks the proxy again) */
  readonly onError?: (error: InlineError) => void;
  readonly warn?: (message: string) => void;
  readonly now?: () => number;
}

export class RsqlInlineProvider implements IInlineCompletionProvider {
  readonly identifier = PROVIDER_ID;
  readonly name = 'rsql-assistant';

  /**
   * Defaults of JupyterLab's own per-provider settings (Settings → Inline Completer →
   * providers): on by default; this provider debounces itself, so the completer's debouncer is
   * off; the timeout covers the debounce, the context and the model's first token.
   */
  readonly schema = {
    properties: {},
    default: { enabled: true, debouncerDelay: 0, timeout: 10000 }
  };

  constructor(private readonly _options: ProviderOptions) {
    this._live =
      _options.liveContext ??
      new LiveContextCache(_options.contextFetcher ?? new KernelContextFetcher());
    this._now = _options.now ?? (() => Date.now());
  }

  get settings(): CompletionSettings {
    return this._settings;
  }

  /** The plugin's own settings (schema/completion.json). */
  updateSettings(settings: CompletionSettings): void {
    this._settings = settings;
    if (!settings.enabled) {
      this._superseder.abort();
    }
  }

  /** What the proxy's status says: off stops requests until it says on again. */
  setAvailable(on: boolean): void {
    this._off = !on;
  }

  /** The model the proxy's status names for completions (a mark's model when the answer
   * named none). */
  setModel(model: string | null): void {
    this._model = model;
  }

  /** The suggestion the editor shows now, or showed last (kept through the next keystroke's
   * fetch: the completer may ask again within the accept that inserts it). */
  get shown(): ShownCompletion | null {
    return this._shown;
  }

  /** JupyterLab's per-provider settings: nothing of them is read here beyond the defaults. */
  configure(): void {
    // enabled, timeout and debouncerDelay are applied by the completer itself
  }

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList> {
    const signal = this._superseder.next();
    for (const [token, open] of this._streams) {
      if (open.signal.aborted) {
        this._streams.delete(token); // superseded before the completer asked for its stream
      }
    }
    const settings = this._settings;
    if (!settings.enabled || this._off || this._now() < this._pausedUntil) {
      return EMPTY;
    }
    if (!(await sleep(settings.debounceMs, signal))) {
      return EMPTY;
    }
    const kernel = (context.session?.kernel ?? null) as ContextKernel | null;
    // the context's wait is the setting's whole budget, whatever the language took: JupyterLab
    // has the kernel's info at hand after its first reply, and on a loaded machine counting
    // the one against the other left a completion without its live context
    const budget = settings.contextTimeoutMs;
    const kernelLang = (await kernelLanguage(kernel, budget)) ?? metadataLanguage(context.widget);
    const language = cellLanguage(request.text, kernelLang, mimeLanguage(request.mimeType));
    const live =
      settings.liveContext && !signal.aborted
        ? await this._live.read(kernel, kernelLang?.toLowerCase() ?? null, budget)
        : null;
    if (signal.aborted) {
      return EMPTY;
    }
    const body = buildRequest({
      text: request.text,
      offset: request.offset,
      language,
      cells: previousCells(context.widget),
      maxCells: settings.maxPreviousCells,
      context: live,
      notebook: context.session?.path ?? null
    });
    let events: AsyncGenerator<InlineEvent> | null = null;
    let handedOver = false;
    try {
      const response = await postInline(this._options.request, body, signal);
      const requestId = response.headers.get('X-Request-Id');
      events = readEvents(response);
      for (;;) {
        const next = await events.next();
        if (next.done || signal.aborted) {
          return EMPTY;
        }
        const event = next.value;
        if (event.error) {
          this._warn(`inline completion stream failed: ${event.error}`);
          return EMPTY;
        }
        if (event.done) {
          // the whole answer came at once (a cache hit); empty means no suggestion
          this._show(event.text, requestId, event.model);
          return event.text ? { items: [{ insertText: event.text }] } : EMPTY;
        }
        if (event.text) {
          const token = `rsql-${++this._tokens}`;
          this._streams.set(token, { events, signal, requestId, text: event.text });
          this._show(event.text, requestId);
          handedOver = true;
          const item: IInlineCompletionItem = { insertText: event.text, isIncomplete: true, token };
          return { items: [item] };
        }
      }
    } catch (error) {
      if (!isAbort(error) && !signal.aborted) {
        this._failed(error);
      }
      return EMPTY;
    } finally {
      if (events && !handedOver) {
        // done without a stream to follow: let the reader go
        void events.return(undefined).catch(() => undefined);
      }
    }
  }

  async *stream(token: string): AsyncGenerator<{ response: IInlineCompletionItem }, void> {
    const open = this._streams.get(token);
    if (!open) {
      return;
    }
    try {
      for (;;) {
        if (open.signal.aborted) {
          return;
        }
        const next = await open.events.next();
        if (next.done || open.signal.aborted) {
          return;
        }
        const event = next.value;
        if (event.error) {
          this._warn(`inline completion stream failed: ${event.error}`);
          return;
        }
        if (event.text !== open.text) {
          open.text = event.text;
          this._show(event.text, open.requestId, event.model);
          yield { response: { insertText: event.text } };
        }
        if (event.done) {
          return;
        }
      }
    } catch (error) {
      if (!isAbort(error) && !open.signal.aborted) {
        this._failed(error);
      }
    } finally {
      this._streams.delete(token);
      void open.events.return(undefined).catch(() => undefined);
    }
  }

  /** Streams open now (tests; a superseded one is dropped when its reader ends). */
  get openStreams(): number {
    return this._streams.size;
  }

  /** Stop: abort what is in flight (the plugin being disposed). */
  dispose(): void {
    this._superseder.abort();
    this._streams.clear();
  }

  private _show(text: string, requestId: string | null, model?: string): void {
    this._shown = text ? { text, requestId, model: model ?? this._model } : null;
  }

  private _failed(error: unknown): void {
    if (error instanceof InlineError) {
      this._pauseFor(error);
      const code = error.code ? ` ${error.code}` : '';
      this._warn(`inline completion refused (HTTP ${error.status}${code}): ${error.message}`);
      this._options.onError?.(error);
      return;
    }
    this._warn(`inline completion failed: ${error instanceof Error ? error.message : error}`);
  }

  private _pauseFor(error: InlineError): void {
    if (error.status === 429) {
      const seconds = Math.min(MAX_RETRY_S, error.retryAfterS ?? DEFAULT_RETRY_S);
      this._pausedUntil = this._now() + seconds * 1000;
    } else if (error.status === 403 || error.status === 404) {
      // a window, completions switched off, or no endpoint: until the status says on again
      this._off = true;
    }
  }

  private _warn(message: string): void {
    const now = this._now();
    const last = this._warned.get(message);
    if (last !== undefined && now - last < WARN_EVERY_MS) {
      return;
    }
    if (this._warned.size > 100) {
      this._warned.clear(); // messages carry times and names: keep the map small
    }
    this._warned.set(message, now);
    (this._options.warn ?? console.warn)(`rsql-assistant: ${message}`);
  }

  private _settings: CompletionSettings = DEFAULT_SETTINGS;
  private readonly _superseder = new Superseder();
  private readonly _streams = new Map<string, OpenStream>();
  private readonly _live: LiveContextCache;
  private readonly _now: () => number;
  private readonly _warned = new Map<string, number>();
  // a 429's Retry-After: no request before this time
  private _pausedUntil = 0;
  // the proxy said off (its status, or a 403): no request until its status says on
  private _off = false;
  private _tokens = 0;
  private _model: string | null = null;
  private _shown: ShownCompletion | null = null;
}
