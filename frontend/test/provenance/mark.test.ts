// a cell's provenance mark: the fingerprint both languages share, the counts, a hostile mark
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  addContribution,
  codeLines,
  describeMark,
  fingerprint,
  Mark,
  MAX_FINGERPRINTS,
  newMark,
  readMark,
  readOrigin,
  recount,
  withCounts
} from '../../src/provenance/mark';

// the vectors rsql_magic/provenance/marks.py is held to as well (tests/unit/test_provenance_marks.py)
const VECTORS = JSON.parse(readFileSync(join(__dirname, 'fingerprints.json'), 'utf-8')) as {
  lines: { line: string; fingerprint: string }[];
  cells: { source: string; fingerprints: string[]; lines: number; assistant_lines: number }[];
};

const ASK = { kind: 'ask', model: 'fake-small', requestId: 'abc123' } as const;
const TIME = '2026-11-23T10:00:00.000Z';

describe('the fingerprint and the counts', () => {
  it('are the Python side\'s on the shared vectors, lone surrogates and bidi marks included', () => {
    for (const { line, fingerprint: expected } of VECTORS.lines) {
      expect(fingerprint(line.replace(/^[ \t]+|[ \t]+$/g, ''))).toBe(expected);
    }
    for (const cell of VECTORS.cells) {
      expect(codeLines(cell.source)).toHaveLength(cell.lines);
      expect(recount(cell.source, cell.fingerprints)).toBe(cell.assistant_lines);
    }
  });

  it('is FNV-1a 64 (its reference values)', () => {
    expect(fingerprint('')).toBe('cbf29ce484222325');
    expect(fingerprint('a')).toBe('af63dc4c8601ec8c');
    expect(fingerprint('foobar')).toBe('85944171f73967e8');
  });

  it('count a line the assistant wrote twice only as often as it is there', () => {
    const mark = newMark(ASK, 'x = 1\nx = 1\ny = 2', TIME);
    expect(mark).toMatchObject({ lines: 3, assistant_lines: 3 });
    expect(withCounts(mark, 'x = 1\ny = 3\nz = 4\nw = 5')).toMatchObject({
      lines: 4,
      assistant_lines: 1
    });
    expect(withCounts(mark, '  x = 1\n\nx = 1  \n y = 2')).toBe(mark); // nothing changed
  });
});

describe('a contribution to a cell', () => {
  it('adds a completion to a cell the assistant wrote, and makes a mark for one it did not', () => {
    const mark = newMark(ASK, 'df = load()', TIME);
    const inline = { kind: 'inline', model: 'fast', requestId: 'r2' } as const;
    const source = 'df = load()\ndf.revenue.sum()';
    const both = addContribution(mark, inline, ['df.revenue.sum()'], source, TIME);
    expect(both).toMatchObject({ kind: 'ask', lines: 2, assistant_lines: 2 });
    expect(both.more).toEqual([{ kind: 'inline', model: 'fast', request_id: 'r2', time: TIME }]);
    const fresh = addContribution(null, inline, ['sales.revenue'], 'import x\nsales.revenue', TIME);
    expect(fresh).toMatchObject({ kind: 'inline', lines: 2, assistant_lines: 1, more: [] });
  });
});

describe('a mark read from a notebook file', () => {
  it('keeps only what has the extension\'s shape', () => {
    const good = newMark(ASK, 'a\nb', TIME);
    expect(readMark({ provenance: good })).toEqual(good);
    expect(readMark(null)).toBeNull();
    expect(readMark({ provenance: 'ask' })).toBeNull();
    expect(readMark({ provenance: { ...good, kind: 'exec' } })).toBeNull();
    const odd = readMark({
      provenance: {
        ...good,
        request_id: '../../etc/passwd',
        lines: -3,
        assistant_lines: 'all',
        fingerprints: ['zz', 12, good.fingerprints[0]],
        more: [{ kind: 'inline' }, 'x', { kind: 'run-me' }]
      }
    })!;
    expect(odd.request_id).toBeNull();
    expect(odd).toMatchObject({ lines: 0, assistant_lines: 0 });
    expect(odd.fingerprints).toEqual([good.fingerprints[0]]);
    expect(odd.more).toHaveLength(1);
  });

  it('is bounded: a file cannot make a cell hold a million fingerprints', () => {
    const many = Array.from({ length: MAX_FINGERPRINTS + 500 }, () => 'cbf29ce484222325');
    const mark = readMark({ provenance: { ...newMark(ASK, 'a', TIME), fingerprints: many } })!;
    expect(mark.fingerprints).toHaveLength(MAX_FINGERPRINTS);
  });

  it('says in its tooltip what it holds, markup and hidden characters as text', () => {
    const hostile: Mark = {
      ...newMark(ASK, 'a', TIME),
      model: '<img src=x onerror=alert(1)>\u202egpt',
      time: '\u001b[2Know'
    };
    const tip = describeMark(readMark({ provenance: hostile })!);
    expect(tip).toContain('%%ask --insert');
    expect(tip).toContain('<img src=x onerror=alert(1)>\\u202egpt'); // a string, shown as such
    expect(tip).not.toMatch(/[\u202e\u001b]/);
    expect(tip).toContain('1 of 1 line as the assistant wrote them');
  });

  it('reads an origin only of our kinds, its request id only as the proxy makes them', () => {
    expect(readOrigin({ kind: 'chat', model: 'm', request_id: 'a-b_c.1:2' })).toEqual({
      kind: 'chat',
      model: 'm',
      requestId: 'a-b_c.1:2'
    });
    expect(readOrigin({ kind: 'chat', request_id: 'has space' })?.requestId).toBeNull();
    expect(readOrigin({ kind: 'eval' })).toBeNull();
    expect(readOrigin([])).toBeNull();
  });
});
