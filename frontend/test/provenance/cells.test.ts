// marks on cells: written once, counted again as the student edits, drawn as text
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import {
  acceptedLines,
  addToCell,
  drawMark,
  markOf,
  NotebookMarks,
  stampCell,
  touchedLines
} from '../../src/provenance/cells';
import { fakeCell, fakeWidget } from './fakes';

const ASK = { kind: 'ask', model: 'fake-small', requestId: 'abc123' } as const;
const TIME = '2026-11-23T10:00:00.000Z';

describe('writing a mark', () => {
  it('marks a cell once, by what made it, and keeps the rest of its rsql metadata', () => {
    const cell = fakeCell('x = 1\ny = 2', 'c1', { rsql: { other: 1 }, tags: ['a'] });
    expect(stampCell(cell, ASK, TIME)).toBe(true);
    expect(cell.metadata.rsql).toMatchObject({ other: 1, provenance: { kind: 'ask', lines: 2 } });
    expect(cell.metadata.tags).toEqual(['a']);
    expect(stampCell(cell, { ...ASK, kind: 'chat' }, TIME)).toBe(false);
    expect(markOf(cell)?.kind).toBe('ask');
  });

  it('adds an accepted completion\'s lines to a cell, as they read after it', () => {
    const cell = fakeCell('import pandas as pd\nsales.revenue');
    addToCell(cell, { kind: 'inline', model: 'fast', requestId: 'r9' }, ['sales.revenue'], TIME);
    expect(markOf(cell)).toMatchObject({ kind: 'inline', lines: 2, assistant_lines: 1 });
  });
});

describe('where a completion wrote', () => {
  it('is the whole lines its text touched, found right before the cursor', () => {
    const source = 'x = 1\nsales.revenue.sum()\ny = 2';
    const cursor = source.indexOf('.sum()') + '.sum()'.length;
    expect(acceptedLines(source, cursor, 'revenue.sum()')).toEqual(['sales.revenue.sum()']);
    expect(acceptedLines(source, cursor, 'other()')).toBeNull(); // another provider's text
    expect(acceptedLines(source, 0, 'x')).toBeNull();
    expect(touchedLines('a\nbc\nd', 3, 6)).toEqual(['bc', 'd']);
    expect(touchedLines('ab\ncd\n', 0, 3)).toEqual(['ab']); // its line break ends it
  });
});

describe('keeping the counts and drawing the mark', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    document.body.replaceChildren();
  });

  it('counts again a moment after the student edits, and redraws the mark', () => {
    const cell = fakeCell('a = 1\nb = 2\nc = 3');
    stampCell(cell, ASK, TIME);
    const widget = fakeWidget(cell);
    const marks = new NotebookMarks(() => [widget], 100);
    marks.update();
    const node = widget.node.querySelector('.rsql-provenance-mark')!;
    expect(node.textContent).toBe('AI 3/3');
    expect(widget.node.classList.contains('rsql-mod-assisted')).toBe(true);
    cell.setSource('a = 1\nb = 20\nc = 3\nd = 4');
    expect(markOf(cell)).toMatchObject({ lines: 3, assistant_lines: 3 }); // not yet
    vi.advanceTimersByTime(150);
    expect(markOf(cell)).toMatchObject({ lines: 4, assistant_lines: 2 });
    expect(node.textContent).toBe('AI 2/4');
    expect((node as HTMLElement).title).toContain('2 of 4 lines as the assistant wrote them');
    marks.dispose();
  });

  it('leaves an unmarked cell alone and takes a mark away when the metadata loses it', () => {
    const plain = fakeCell('z = 1', 'p');
    const widget = fakeWidget(plain);
    drawMark(widget);
    expect(widget.node.querySelector('.rsql-provenance-mark')).toBeNull();
    stampCell(plain, ASK, TIME);
    drawMark(widget);
    expect(widget.node.querySelector('.rsql-provenance-mark')).not.toBeNull();
    plain.setMetadata('rsql', {});
    drawMark(widget);
    expect(widget.node.querySelector('.rsql-provenance-mark')).toBeNull();
    expect(widget.node.classList.contains('rsql-mod-assisted')).toBe(false);
  });

  it('draws a hostile mark from a notebook file as text: no element, no script', () => {
    const hostile = fakeCell('x', 'h', {
      rsql: {
        provenance: {
          kind: 'chat',
          model: '<img src=x onerror="window.pwned=1">',
          request_id: 'r1',
          time: '<script>window.pwned=2</script>',
          lines: 1,
          assistant_lines: 1,
          fingerprints: [],
          more: []
        }
      }
    });
    const widget = fakeWidget(hostile);
    drawMark(widget);
    const node = widget.node.querySelector('.rsql-provenance-mark') as HTMLElement;
    expect(node.querySelector('img, script')).toBeNull();
    expect(node.title).toContain('<img src=x onerror="window.pwned=1">');
    expect((window as unknown as { pwned?: number }).pwned).toBeUndefined();
  });
});
