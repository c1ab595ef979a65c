/**
 * The body of POST {proxy}inline (contract section 1), with its bounds: the proxy refuses a body
 * past them, so the frontend cuts first, keeping the text nearest the cursor.
 */

import type { KernelContext } from './kernelContext';

export const MAX_PREFIX = 8000;
export const MAX_SUFFIX = 4000;
export const MAX_CELLS = 5;
export const MAX_CELL = 2000;

export interface InlineRequest {
  prefix: string;
  suffix: string;
  language: string;
  cells: string[];
  context?: KernelContext;
  notebook?: string;
  stream: true;
}

export interface RequestParts {
  /** the whole cell (editor) text */
  readonly text: string;
  /** the cursor's offset in `text` */
  readonly offset: number;
  readonly language: string;
  /** previous cells' sources, oldest first */
  readonly cells: readonly string[];
  readonly maxCells?: number;
  readonly context?: KernelContext | null;
  readonly notebook?: string | null;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** The last `max` characters of `text`, never starting inside a surrogate pair. */
export function tail(text: string, max: number): string {
  if (text.length <= max) {
    return text;
  }
  const cut = text.slice(text.length - max);
  return cut.length && isLowSurrogate(cut.charCodeAt(0)) ? cut.slice(1) : cut;
}

/** The first `max` characters of `text`, never ending inside a surrogate pair. */
export function head(text: string, max: number): string {
  if (text.length <= max) {
    return text;
  }
  const cut = text.slice(0, max);
  return cut.length && isHighSurrogate(cut.charCodeAt(cut.length - 1)) ? cut.slice(0, -1) : cut;
}

/** The text before and after the cursor, each within the proxy's bound. */
export function splitAtCursor(text: string, offset: number): { prefix: string; suffix: string } {
  const at = Math.min(Math.max(0, Math.floor(offset)), text.length);
  return { prefix: tail(text.slice(0, at), MAX_PREFIX), suffix: head(text.slice(at), MAX_SUFFIX) };
}

/** The last `max` (at most 5) non-blank cells, oldest first, each cut to its last 2000 chars. */
export function boundCells(cells: readonly string[], max: number = MAX_CELLS): string[] {
  const keep = Math.max(0, Math.min(MAX_CELLS, Math.floor(max)));
  if (keep === 0) {
    return [];
  }
  return cells
    .filter(cell => cell.trim() !== '')
    .slice(-keep)
    .map(cell => tail(cell, MAX_CELL));
}

export function buildRequest(parts: RequestParts): InlineRequest {
  const body: InlineRequest = {
    ...splitAtCursor(parts.text, parts.offset),
    language: parts.language,
    cells: boundCells(parts.cells, parts.maxCells),
    stream: true
  };
  if (parts.context) {
    body.context = parts.context;
  }
  if (parts.notebook) {
    body.notebook = parts.notebook;
  }
  return body;
}
