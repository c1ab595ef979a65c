import { describe, expect, it } from 'vitest';

import { NOTES, readProposal } from '../src/proposal/model';
import { buildView } from '../src/proposal/view';

const HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>';

function render(code: string, title: string, decided: 'accepted' | 'rejected' | null, trusted = true) {
  const clicks: string[] = [];
  const proposal = readProposal({ code, language: 'python', title })!;
  const node = buildView(
    document,
    proposal,
    { decided, trusted },
    { accept: () => clicks.push('accept'), reject: () => clicks.push('reject') }
  );
  document.body.replaceChildren(node);
  return { node, clicks };
}

function button(node: HTMLElement, name: string): HTMLButtonElement {
  return node.querySelector(`.rsql-proposal-${name}`) as HTMLButtonElement;
}

describe('text-only rendering', () => {
  it('shows markup in the code and the title as text, creating no element from it', () => {
    const { node } = render(HOSTILE, `<b>${HOSTILE}</b>`, null);
    expect(node.querySelector('.rsql-proposal-code')!.textContent).toBe(HOSTILE);
    expect(node.querySelector('.rsql-proposal-title b')!.textContent).toBe(`<b>${HOSTILE}</b>`);
    expect(node.querySelectorAll('img, script').length).toBe(0);
    expect(node.querySelectorAll('.rsql-proposal-title b').length).toBe(1); // ours only
    expect((window as unknown as { pwned?: number }).pwned).toBeUndefined();
  });

  it('offers Accept and Reject until a decision, then says what happened', () => {
    const open = render('x = 1', 't', null);
    expect(button(open.node, 'accept').disabled).toBe(false);
    button(open.node, 'accept').click();
    button(open.node, 'reject').click();
    expect(open.clicks).toEqual(['accept', 'reject']);

    const accepted = render('x = 1', 't', 'accepted').node;
    expect(button(accepted, 'accept').disabled && button(accepted, 'reject').disabled).toBe(true);
    expect(accepted.querySelector('.rsql-proposal-note')!.textContent).toBe(NOTES.accepted);
    expect(NOTES.accepted).toBe('Inserted below; it has not run.');
    const rejected = render('x = 1', 't', 'rejected').node;
    expect(rejected.querySelector('.rsql-proposal-note')!.textContent).toBe(
      'Rejected; nothing inserted.'
    );
  });

  it('an untrusted notebook shows the proposal with Accept off', () => {
    const { node } = render('x = 1', 't', null, false);
    expect(button(node, 'accept').disabled).toBe(true);
    expect(button(node, 'reject').disabled).toBe(false);
    expect(node.querySelector('.rsql-proposal-note')!.textContent).toBe(NOTES.untrusted);
  });
});
