/**
 * A cell's provenance mark (issue 75): `rsql.provenance` in its metadata, on every cell the
 * assistant writes or fills. How it came (`kind`), the `model`, the proxy's `request_id` of the
 * answer (X-Request-Id), when it was inserted, a fingerprint of each line as the assistant wrote
 * it, and the counts kept up to date as the student edits: `lines` (the cell's lines now) and
 * `assistant_lines` (of those, still as the assistant wrote them). Later contributions (an
 * inline completion accepted into the cell) go under `more`.
 *
 * The same shape and the same fingerprint as rsql_magic/provenance/marks.py, which
 * `rsql-provenance` reads (tests hold the two equal on shared vectors). Pure: no JupyterLab
 * import. A notebook file is anyone's: a mark read from one is hostile input, bounded here.
 */

import { shownText } from '../hiddenCharacters';

export const KINDS = ['ask', 'sql_ai', 'agent', 'chat', 'chat_sql', 'inline'] as const;
export type Kind = (typeof KINDS)[number];

export const METADATA_KEY = 'rsql';
export const MAX_FINGERPRINTS = 2000;
export const MAX_MORE = 50;
const REQUEST_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const HEX16 = /^[0-9a-f]{16}$/;

/** Who wrote: what the kernel, the proposal or the completion knows of the answer. */
export interface Origin {
  readonly kind: Kind;
  readonly model: string | null;
  readonly requestId: string | null;
}

// types, not interfaces: a cell's metadata is JSON, whose object type has an index signature
export type Contribution = {
  kind: Kind;
  model: string | null;
  request_id: string | null;
  time: string;
};

/** `rsql.provenance` as it is written into a cell's metadata (JSON). */
export type Mark = Contribution & {
  version: 1;
  lines: number;
  assistant_lines: number;
  fingerprints: string[];
  more: Contribution[];
};

/** The lines that count: not blank, without the spaces and tabs around them. */
export function codeLines(source: string): string[] {
  return source
    .replace(/\r\n?/g, '\n')
    .split('\n')
    .map(line => line.replace(/^[ \t]+|[ \t]+$/g, ''))
    .filter(line => line !== '');
}

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK = 0xffffffffffffffffn;

/** FNV-1a, 64 bits, of the line's UTF-8 bytes, as 16 hexadecimal digits. */
export function fingerprint(line: string): string {
  let h = FNV_OFFSET;
  for (const byte of new TextEncoder().encode(line)) {
    h = ((h ^ BigInt(byte)) * FNV_PRIME) & MASK;
  }
  return h.toString(16).padStart(16, '0');
}

/** How many of `source`'s lines are still as the assistant wrote them (each fingerprint
 * matches one line at most). */
export function recount(source: string, fingerprints: readonly string[]): number {
  const left = new Map<string, number>();
  for (const fp of fingerprints) {
    left.set(fp, (left.get(fp) ?? 0) + 1);
  }
  let found = 0;
  for (const line of codeLines(source)) {
    const fp = fingerprint(line);
    const n = left.get(fp) ?? 0;
    if (n > 0) {
      left.set(fp, n - 1);
      found += 1;
    }
  }
  return found;
}

function text(value: unknown, limit: number): string | null {
  return typeof value === 'string' && value.trim() ? value.trim().slice(0, limit) : null;
}

/** An origin from untrusted JSON (a proposal's bundle, the kernel's payload): null when it
 * names no kind of ours; a request id not as the proxy makes them is dropped. */
export function readOrigin(value: unknown): Origin | null {
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return null;
  }
  const raw = value as Record<string, unknown>;
  const kind = KINDS.find(k => k === raw.kind);
  if (!kind) {
    return null;
  }
  const rid = text(raw.request_id, 200);
  return {
    kind,
    model: text(raw.model, 200),
    requestId: rid && REQUEST_ID.test(rid) ? rid : null
  };
}

function contribution(origin: Origin, time: string): Contribution {
  return { kind: origin.kind, model: origin.model, request_id: origin.requestId, time };
}

/** The mark of a cell the assistant wrote whole: every line of `source` is its. */
export function newMark(origin: Origin, source: string, time: string): Mark {
  const fingerprints = codeLines(source).slice(0, MAX_FINGERPRINTS).map(fingerprint);
  return {
    version: 1,
    ...contribution(origin, time),
    lines: codeLines(source).length,
    assistant_lines: fingerprints.length,
    fingerprints,
    more: []
  };
}

/** A cell's mark after the assistant wrote `lines` into it (an accepted completion: the lines
 * it touched, as they read after it); a new mark when the cell had none. */
export function addContribution(
  mark: Mark | null,
  origin: Origin,
  lines: readonly string[],
  source: string,
  time: string
): Mark {
  const added = lines
    .map(line => line.replace(/^[ \t]+|[ \t]+$/g, ''))
    .filter(line => line !== '')
    .map(fingerprint);
  if (mark === null) {
    const fingerprints = added.slice(0, MAX_FINGERPRINTS);
    return {
      version: 1,
      ...contribution(origin, time),
      lines: codeLines(source).length,
      assistant_lines: recount(source, fingerprints),
      fingerprints,
      more: []
    };
  }
  const fingerprints = [...mark.fingerprints, ...added].slice(0, MAX_FINGERPRINTS);
  const more = [...mark.more, contribution(origin, time)].slice(-MAX_MORE);
  return {
    ...mark,
    fingerprints,
    more,
    lines: codeLines(source).length,
    assistant_lines: recount(source, fingerprints)
  };
}

/** The mark with its counts for `source` now; the same object when they have not changed. */
export function withCounts(mark: Mark, source: string): Mark {
  const lines = codeLines(source).length;
  const assistant = recount(source, mark.fingerprints);
  if (lines === mark.lines && assistant === mark.assistant_lines) {
    return mark;
  }
  return { ...mark, lines, assistant_lines: assistant };
}

function readContribution(value: unknown): Contribution | null {
  const origin = readOrigin(value);
  if (!origin) {
    return null;
  }
  return contribution(origin, text((value as Record<string, unknown>).time, 40) ?? '');
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : 0;
}

/** The mark in a cell's metadata (the whole `rsql` object), or null: read from a notebook
 * file, so only what has the extension's shape is kept. */
export function readMark(rsql: unknown): Mark | null {
  if (!rsql || typeof rsql !== 'object' || Array.isArray(rsql)) {
    return null;
  }
  const raw = (rsql as Record<string, unknown>).provenance;
  const first = readContribution(raw);
  if (!first) {
    return null;
  }
  const fields = raw as Record<string, unknown>;
  const prints = Array.isArray(fields.fingerprints) ? fields.fingerprints : [];
  const more = Array.isArray(fields.more) ? fields.more : [];
  return {
    version: 1,
    ...first,
    lines: count(fields.lines),
    assistant_lines: count(fields.assistant_lines),
    fingerprints: prints
      .slice(0, MAX_FINGERPRINTS)
      .filter((p): p is string => typeof p === 'string' && HEX16.test(p)),
    more: more
      .slice(0, MAX_MORE)
      .map(readContribution)
      .filter((c): c is Contribution => c !== null)
  };
}

const WORDS: Readonly<Record<Kind, string>> = {
  ask: '%%ask --insert',
  sql_ai: '%%sql_ai --emit',
  agent: "an agent's proposed cell, accepted",
  chat: "the chat panel's Insert",
  chat_sql: "the chat panel's query cell (after Run SQL)",
  inline: 'an inline completion, accepted'
};

/** The mark's tooltip, as text (every value from the file written safe: hidden characters as
 * escapes, bounded). */
export function describeMark(mark: Mark): string {
  const shown = (value: string | null, fallback: string) =>
    value ? shownText(value).slice(0, 120) : fallback;
  const rows = [
    `Written with the assistant: ${WORDS[mark.kind]}`,
    `model ${shown(mark.model, 'unknown')} · request ${shown(mark.request_id, 'unknown')}`,
    `inserted ${shown(mark.time, 'at an unknown time')}`,
    `${mark.assistant_lines} of ${mark.lines} line${mark.lines === 1 ? '' : 's'} ` +
      'as the assistant wrote them'
  ];
  if (mark.more.length) {
    rows.push(`and ${mark.more.length} more contribution${mark.more.length > 1 ? 's' : ''}`);
  }
  return rows.join('\n');
}

/** The mark's short label: which way and the share still the assistant's. */
export function markLabel(mark: Mark): string {
  return `AI ${mark.assistant_lines}/${mark.lines}`;
}
