/**
 * HTTP to the proxy's inline endpoint (contract section 1). The plugin hands in a Requester
 * built on ServerConnection.makeRequest (XSRF header, cookies, base URL); this module knows
 * nothing of JupyterLab, so the unit tests drive it with plain Responses.
 */

import type { InlineRequest } from './request';
import { InlineEvent, parseInlineEvent, SseParser } from './sse';

/** One request to `path` under the server's base URL (e.g. 'rsql/inline'). */
export type Requester = (path: string, init: RequestInit) => Promise<Response>;

export const INLINE_PATH = 'rsql/inline';

/** An error reply: its HTTP status and the contract's {error: {message, type, code}}. */
export class InlineError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly retryAfterS: number | null = null
  ) {
    super(message);
    this.name = 'InlineError';
  }
}

/** Read an error reply (whatever its body holds) into an InlineError. */
export async function readError(response: Response): Promise<InlineError> {
  let message = `HTTP ${response.status}`;
  let code = '';
  try {
    const body = (await response.json()) as { error?: { message?: unknown; code?: unknown } };
    if (body?.error && typeof body.error.message === 'string') {
      message = body.error.message;
    }
    if (body?.error && typeof body.error.code === 'string') {
      code = body.error.code;
    }
  } catch {
    // not JSON (a proxy in front, an HTML error page): the status says enough
  }
  const retry = Number(response.headers.get('Retry-After'));
  return new InlineError(
    message,
    response.status,
    code,
    Number.isFinite(retry) && retry > 0 ? retry : null
  );
}

/** The course's tutor mode in force (issue 75): its window, the admin's message, and whether
 * completions offer names (else none). */
export interface InlineTutor {
  readonly window: string;
  readonly message: string;
  readonly names: boolean;
  readonly endsAtLocal: string | null;
}

/** GET {proxy}inline's answer. */
export interface InlineStatus {
  readonly on: boolean;
  readonly reason: string | null;
  readonly message: string;
  readonly model: string | null;
  /** seconds until the window that turns them off ends (from the server's clock), or null */
  readonly endsInS?: number;
  /** tutor mode, when a tutor window is in force for the user (null: none, or an older proxy) */
  readonly tutor?: InlineTutor | null;
  /** the course log that keeps the user's requests, which the item tells them of (null: none) */
  readonly courseLog?: InlineCourseLog | null;
}

export interface InlineCourseLog {
  /** the course (its hub group), or several, comma-separated */
  readonly course: string;
  /** what the student is told: who reads, what, for how long */
  readonly notice: string;
}

function parseCourseLog(value: unknown): InlineCourseLog | null {
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return null;
  }
  const obj = value as Record<string, unknown>;
  const notice = bounded(obj.notice, 1000);
  return notice ? { course: bounded(obj.course, 200), notice } : null;
}

function bounded(value: unknown, limit: number): string {
  return typeof value === 'string' ? value.slice(0, limit) : '';
}

function parseTutor(value: unknown): InlineTutor | null {
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return null;
  }
  const obj = value as Record<string, unknown>;
  return {
    window: bounded(obj.window, 120),
    message: bounded(obj.message, 600),
    names: obj.completions === 'names' || obj.completions === true,
    endsAtLocal: bounded(obj.ends_at_local, 80) || null
  };
}

export function parseStatus(value: unknown): InlineStatus {
  const obj = (value && typeof value === 'object' ? value : {}) as Record<string, unknown>;
  const ends = obj.ends_in_s;
  return {
    on: obj.on === true,
    reason: typeof obj.reason === 'string' ? obj.reason : null,
    message: typeof obj.message === 'string' ? obj.message : '',
    model: typeof obj.model === 'string' ? obj.model : null,
    ...(typeof ends === 'number' && Number.isFinite(ends) && ends >= 0 ? { endsInS: ends } : {}),
    tutor: parseTutor(obj.tutor),
    courseLog: parseCourseLog(obj.course_log)
  };
}

export async function getStatus(request: Requester, signal?: AbortSignal): Promise<InlineStatus> {
  const response = await request(INLINE_PATH, { method: 'GET', cache: 'no-store', signal });
  if (!response.ok) {
    throw await readError(response);
  }
  return parseStatus(await response.json());
}

/** POST a completion request; resolves once the answer's headers are in (2xx), else throws. */
export async function postInline(
  request: Requester,
  body: InlineRequest,
  signal: AbortSignal
): Promise<Response> {
  const response = await request(INLINE_PATH, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    cache: 'no-store',
    signal
  });
  if (!response.ok) {
    throw await readError(response);
  }
  return response;
}

/**
 * The answer's events: the stream's, or the one of a JSON answer. Ends after the `done` event
 * (or the end of the body); aborting the request's signal ends the underlying read.
 */
export async function* readEvents(response: Response): AsyncGenerator<InlineEvent> {
  const type = response.headers.get('Content-Type') ?? '';
  if (!type.includes('text/event-stream')) {
    const event = parseInlineEvent(await response.text());
    if (event) {
      yield { ...event, done: true };
    }
    return;
  }
  if (!response.body) {
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      const chunk = done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (const data of parser.feed(chunk)) {
        const event = parseInlineEvent(data);
        if (event) {
          yield event;
          if (event.done) {
            return;
          }
        }
      }
      if (done) {
        for (const data of parser.end()) {
          const event = parseInlineEvent(data);
          if (event) {
            yield event;
          }
        }
        return;
      }
    }
  } finally {
    // stop reading (the generator closed early, or the stream is over): frees the connection
    reader.cancel().catch(() => undefined);
  }
}
