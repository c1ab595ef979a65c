import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { describe, expect, it } from 'vitest';

import { MIME_TYPE, NewCodeCell } from '../src/proposal/model';
import { ProposalRenderer } from '../src/proposal/renderer';

// the parts of IRenderMime.IMimeModel the renderer reads and writes
function fakeModel(data: unknown, trusted = true) {
  const model = {
    trusted,
    data: { [MIME_TYPE]: data, 'text/plain': 'x' } as Record<string, unknown>,
    metadata: {} as Record<string, unknown>,
    setData(options: { metadata?: Record<string, unknown> }) {
      model.metadata = options.metadata ?? model.metadata;
    }
  };
  return model;
}

async function rendered(data: unknown, insert: (cell: NewCodeCell) => boolean, trusted = true) {
  const model = fakeModel(data, trusted);
  const renderer = new ProposalRenderer((_output, cell) => insert(cell));
  await renderer.renderModel(model as unknown as IRenderMime.IMimeModel);
  const click = (name: string) =>
    (renderer.node.querySelector(`.rsql-proposal-${name}`) as HTMLButtonElement).click();
  const note = () => renderer.node.querySelector('.rsql-proposal-note')!.textContent;
  return { model, renderer, click, note };
}

describe('the renderer', () => {
  it('inserts the code once on Accept, records it, and a second click does nothing', async () => {
    const cells: NewCodeCell[] = [];
    const r = await rendered({ code: 'print(1)', language: 'python', title: 't' }, c => {
      cells.push(c);
      return true;
    });
    r.click('accept');
    r.click('accept');
    r.click('reject');
    expect(cells.map(c => c.source)).toEqual(['print(1)']);
    expect(r.note()).toBe('Inserted below; it has not run.');
    expect(r.model.metadata[MIME_TYPE]).toEqual({ decision: 'accepted' });
  });

  it('inserts nothing after Reject', async () => {
    const cells: NewCodeCell[] = [];
    const r = await rendered({ code: 'print(1)', language: 'python', title: 't' }, c => {
      cells.push(c);
      return true;
    });
    r.click('reject');
    r.click('accept');
    expect(cells).toEqual([]);
    expect(r.note()).toBe('Rejected; nothing inserted.');
  });

  it('decides once for every view of one output: a second view cannot insert after Reject', async () => {
    // the same output drawn twice (a notebook and its output in another view): both views are
    // drawn before a decision, so the second view's buttons are still enabled when it is clicked
    const cells: NewCodeCell[] = [];
    const model = fakeModel({ code: 'print(1)', language: 'python', title: 't' });
    const views = [0, 1].map(() => new ProposalRenderer((_output, cell) => cells.push(cell) > 0));
    for (const view of views) {
      await view.renderModel(model as unknown as IRenderMime.IMimeModel);
    }
    const button = (view: ProposalRenderer, name: string) =>
      view.node.querySelector(`.rsql-proposal-${name}`) as HTMLButtonElement;
    button(views[0], 'reject').click();
    expect(button(views[1], 'accept').disabled).toBe(false);
    button(views[1], 'accept').click();
    expect(cells).toEqual([]);
    expect(model.metadata[MIME_TYPE]).toEqual({ decision: 'rejected' });
  });

  it('never inserts from an untrusted output, even when its button is forced', async () => {
    const cells: NewCodeCell[] = [];
    const r = await rendered(
      { code: 'print(1)', language: 'python', title: 't' },
      c => {
        cells.push(c);
        return true;
      },
      false
    );
    const accept = r.renderer.node.querySelector('.rsql-proposal-accept') as HTMLButtonElement;
    accept.disabled = false;
    accept.click();
    expect(cells).toEqual([]);
  });

  it('says so when there is no notebook, and Accept stays available', async () => {
    const r = await rendered({ code: 'x', language: 'python', title: 't' }, () => false);
    r.click('accept');
    expect(r.note()).toBe('No open notebook to insert into; nothing inserted.');
    const accept = r.renderer.node.querySelector('.rsql-proposal-accept') as HTMLButtonElement;
    expect(accept.disabled).toBe(false);
  });
});
