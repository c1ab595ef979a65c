/**
 * The completion plugin's own settings (schema/completion.json), read defensively: a value of
 * the wrong type or out of range falls back to its default instead of breaking typing.
 */

export interface CompletionSettings {
  /** false: no request leaves the browser; the status item says so */
  readonly enabled: boolean;
  /** quiet time after the last keystroke before a request goes out */
  readonly debounceMs: number;
  /** how long the kernel's context may take (and, apart, its language); past it, none is sent */
  readonly contextTimeoutMs: number;
  /** false: never ask the kernel for its frames, R objects and tables */
  readonly liveContext: boolean;
  /** how many previous cells go with a request (the proxy takes at most 5) */
  readonly maxPreviousCells: number;
}

export const DEFAULT_SETTINGS: CompletionSettings = {
  enabled: true,
  debounceMs: 250,
  contextTimeoutMs: 60,
  liveContext: true,
  maxPreviousCells: 5
};

function bounded(value: unknown, fallback: number, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    return fallback;
  }
  return Math.min(max, Math.max(min, Math.round(value)));
}

function flag(value: unknown, fallback: boolean): boolean {
  return typeof value === 'boolean' ? value : fallback;
}

/** Settings from the registry's composite (or anything else): always a whole, valid object. */
export function readSettings(raw: unknown): CompletionSettings {
  const source = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const d = DEFAULT_SETTINGS;
  return {
    enabled: flag(source.enabled, d.enabled),
    debounceMs: bounded(source.debounceMs, d.debounceMs, 0, 5000),
    contextTimeoutMs: bounded(source.contextTimeoutMs, d.contextTimeoutMs, 0, 2000),
    liveContext: flag(source.liveContext, d.liveContext),
    maxPreviousCells: bounded(source.maxPreviousCells, d.maxPreviousCells, 0, 5)
  };
}
