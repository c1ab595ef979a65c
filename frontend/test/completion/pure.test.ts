// the request's pure parts: language, bounds, settings
import { describe, expect, it } from 'vitest';

import { cellLanguage, mimeLanguage, normalLanguage } from '../../src/completion/language';
import { metadataLanguage, previousCells } from '../../src/completion/notebook';
import {
  boundCells,
  buildRequest,
  MAX_CELL,
  MAX_PREFIX,
  MAX_SUFFIX,
  splitAtCursor
} from '../../src/completion/request';
import { DEFAULT_SETTINGS, readSettings } from '../../src/completion/settings';

describe('the cell language', () => {
  it('is R for %%R and SQL for %%sql and %%sql_ai, whatever the kernel', () => {
    expect(cellLanguage('%%R\nlibrary(dplyr)\ncars$', 'python')).toBe('r');
    expect(cellLanguage('%%R -i sales\nsummary(', 'python')).toBe('r');
    expect(cellLanguage('\n  %%sql\nSELECT * FROM ', 'python')).toBe('sql');
    expect(cellLanguage('%%sql_ai --model x\nshow revenue', 'python')).toBe('sql');
  });

  it("is the kernel's otherwise, and python when nothing says", () => {
    expect(cellLanguage('x <- 1', 'R')).toBe('r');
    expect(cellLanguage('sales.', 'python')).toBe('python');
    expect(cellLanguage('sales.', null)).toBe('python');
    expect(cellLanguage('SELECT', null, 'sql')).toBe('sql');
  });

  it('does not take a magic that only starts like one', () => {
    expect(cellLanguage('%%Rscript\nx', 'python')).toBe('python');
    expect(cellLanguage('%%sqlite\nx', 'python')).toBe('python');
    expect(cellLanguage('x = 1\n%%R\n', 'python')).toBe('python');
  });

  it('keeps a language name a short plain word', () => {
    expect(normalLanguage('<b>python</b>')).toBeNull();
    expect(normalLanguage('x'.repeat(40))).toBeNull();
    expect(normalLanguage(' Julia ')).toBe('julia');
    expect(cellLanguage('1', '<script>')).toBe('python');
    expect(mimeLanguage('text/x-rsrc')).toBe('r');
    expect(mimeLanguage('text/x-pgsql')).toBe('sql');
    expect(mimeLanguage('text/plain')).toBeNull();
  });
});

describe('the request body', () => {
  it('cuts the text around the cursor to the proxy bounds, nearest text kept', () => {
    const before = 'a'.repeat(MAX_PREFIX + 10) + 'END';
    const after = 'START' + 'b'.repeat(MAX_SUFFIX + 10);
    const { prefix, suffix } = splitAtCursor(before + after, before.length);
    expect(prefix).toHaveLength(MAX_PREFIX);
    expect(prefix.endsWith('END')).toBe(true);
    expect(suffix).toHaveLength(MAX_SUFFIX);
    expect(suffix.startsWith('START')).toBe(true);
  });

  it('never splits a surrogate pair at a cut', () => {
    const emoji = '😀';
    const text = 'x' + emoji.repeat(MAX_PREFIX);
    const { prefix } = splitAtCursor(text, text.length);
    expect(prefix.length).toBeLessThanOrEqual(MAX_PREFIX);
    expect(prefix.charCodeAt(0)).toBe(emoji.charCodeAt(0));
    const { suffix } = splitAtCursor(emoji.repeat(MAX_SUFFIX), 0);
    expect(suffix.length).toBeLessThanOrEqual(MAX_SUFFIX);
    expect(suffix.charCodeAt(suffix.length - 1)).toBe(emoji.charCodeAt(1));
  });

  it('clamps an offset outside the text', () => {
    expect(splitAtCursor('abc', 99)).toEqual({ prefix: 'abc', suffix: '' });
    expect(splitAtCursor('abc', -5)).toEqual({ prefix: '', suffix: 'abc' });
  });

  it('sends the last five non-blank cells, oldest first, each cut to its end', () => {
    const cells = ['c1', '', 'c2', 'c3', '  \n', 'c4', 'c5', 'c6', 'x'.repeat(MAX_CELL) + 'TAIL'];
    const kept = boundCells(cells);
    expect(kept.slice(0, 4)).toEqual(['c3', 'c4', 'c5', 'c6']);
    expect(kept[4]).toHaveLength(MAX_CELL);
    expect(kept[4].endsWith('TAIL')).toBe(true);
    expect(boundCells(cells, 2)).toEqual(['c6', kept[4]]);
    expect(boundCells(cells, 0)).toEqual([]);
    expect(boundCells(cells, 50)).toHaveLength(5);
  });

  it('holds the context and the notebook only when there are some', () => {
    const bare = buildRequest({ text: 'sales.', offset: 6, language: 'python', cells: [] });
    expect(bare).toEqual({
      prefix: 'sales.',
      suffix: '',
      language: 'python',
      cells: [],
      stream: true
    });
    const context = { frames: [{ name: 'sales', columns: ['revenue'] }] };
    const full = buildRequest({
      text: 'sales.\nprint(1)',
      offset: 6,
      language: 'python',
      cells: ['import pandas as pd'],
      maxCells: 5,
      context,
      notebook: 'work/a.ipynb'
    });
    expect(full).toEqual({
      prefix: 'sales.',
      suffix: '\nprint(1)',
      language: 'python',
      cells: ['import pandas as pd'],
      context,
      notebook: 'work/a.ipynb',
      stream: true
    });
  });
});

describe('the notebook around the cursor', () => {
  const cell = (type: string, source: string) => ({
    model: { type, sharedModel: { getSource: () => source } }
  });

  it("gives the code cells above the active one, not markdown nor the cell's own", () => {
    const panel = {
      content: {
        widgets: [
          cell('code', 'a = 1'),
          cell('markdown', '# t'),
          cell('code', 'b = 2'),
          cell('code', 'sales.')
        ],
        activeCellIndex: 3
      }
    };
    expect(previousCells(panel)).toEqual(['a = 1', 'b = 2']);
    expect(previousCells({ content: { ...panel.content, activeCellIndex: 0 } })).toEqual([]);
  });

  it('gives nothing for a widget that is no notebook', () => {
    expect(previousCells({})).toEqual([]);
    expect(previousCells(null)).toEqual([]);
    expect(metadataLanguage({ content: {} })).toBeNull();
  });

  it("reads the saved language when the kernel's is not known", () => {
    const meta: Record<string, unknown> = { kernelspec: { language: 'R' } };
    expect(metadataLanguage({ model: { getMetadata: (k: string) => meta[k] } })).toBe('R');
    meta.language_info = { name: 'python' };
    expect(metadataLanguage({ model: { getMetadata: (k: string) => meta[k] } })).toBe('python');
  });
});

describe('the settings', () => {
  it('defaults to on, 250 ms debounce, 60 ms context budget, live context, 5 cells', () => {
    expect(readSettings(undefined)).toEqual(DEFAULT_SETTINGS);
    expect(DEFAULT_SETTINGS).toEqual({
      enabled: true,
      debounceMs: 250,
      contextTimeoutMs: 60,
      liveContext: true,
      maxPreviousCells: 5
    });
  });

  it('falls back per field on a wrong type and clamps out-of-range numbers', () => {
    const raw = {
      enabled: 'no',
      debounceMs: -3,
      contextTimeoutMs: 1e9,
      maxPreviousCells: 9,
      liveContext: false
    };
    expect(readSettings(raw)).toEqual({
      enabled: true,
      debounceMs: 0,
      contextTimeoutMs: 2000,
      liveContext: false,
      maxPreviousCells: 5
    });
    expect(readSettings({ debounceMs: Number.NaN }).debounceMs).toBe(250);
  });
});
