import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { describe, expect, it } from 'vitest';

import { shownText } from '../src/hiddenCharacters';
import { MIME_TYPE, NewCodeCell } from '../src/proposal/model';
import { ProposalRenderer } from '../src/proposal/renderer';

// Trojan Source (CVE-2021-42574): drawn as is, the check compares with "user" and the rest is a
// comment; run, the override and isolates sit inside the string and every user passes
const TROJAN = 'if access != "user\u202e \u2066# admins only\u2069 \u2066":\n    grant()\n';
const HIDDEN = ['\u202e', '\u2066', '\u2069', '\u200b', '\u200f', '\u001b', '\r', '\u{e0041}'];

async function accepted(data: Record<string, unknown>) {
  const cells: NewCodeCell[] = [];
  const model = {
    trusted: true,
    data: { [MIME_TYPE]: data } as Record<string, unknown>,
    metadata: {} as Record<string, unknown>,
    setData: () => undefined
  };
  const renderer = new ProposalRenderer((_output, cell) => cells.push(cell) > 0);
  await renderer.renderModel(model as unknown as IRenderMime.IMimeModel);
  const drawn = renderer.node.querySelector('.rsql-proposal-code')!.textContent!;
  const title = renderer.node.querySelector('.rsql-proposal-title')!.textContent!;
  (renderer.node.querySelector('.rsql-proposal-accept') as HTMLButtonElement).click();
  return { drawn, title, inserted: cells.map(c => c.source) };
}

describe('hidden characters in a proposal the kernel did not prepare (a notebook file)', () => {
  it('are drawn as escapes, and Accept inserts exactly the code drawn', async () => {
    const code = `${TROJAN}who = "Ali\u200fce\u200b"  # \u001b[2K\r\nok\u{e0041}\r\n`;
    const r = await accepted({ code, language: 'python', title: 'Proposed \u202ecell' });
    for (const text of [r.drawn, r.title, ...r.inserted]) {
      expect(HIDDEN.filter(c => text.includes(c))).toEqual([]);
    }
    expect(r.drawn).toContain('"user\\u202e \\u2066# admins only\\u2069 \\u2066"');
    expect(r.drawn).toContain('"Ali\\u200fce\\u200b"  # \\x1b[2K\nok\\U000e0041\n');
    expect(r.inserted).toEqual([r.drawn]);
    expect(r.title).toContain('Proposed \\u202ecell');
    expect(r.title).toContain('hidden');
  });

  it('leave a proposal without them exactly as it came', async () => {
    const code = 'naïve = "日本語 ✓"\t# كود\n';
    const r = await accepted({ code, language: 'python', title: 'Proposed cell 1 (python)' });
    expect(r.inserted).toEqual([code]);
    expect(r.title).toBe(
      'Proposed cell 1 (python) · it runs only if you accept it and then run it'
    );
  });
});

describe('the escapes', () => {
  it('are the ones Python writes, so a string literal holds the same character again', () => {
    expect(shownText('a\u0007\u0085\u00ad\u202e\u{e0041}\tb\nc')).toBe(
      'a\\x07\\x85\\xad\\u202e\\U000e0041\tb\nc'
    );
  });
});
