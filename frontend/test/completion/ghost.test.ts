// the ghost text guard: JupyterLab's ghost effect survives another extension's extender
import { EditorState, StateEffect } from '@codemirror/state';
import { describe, expect, it } from 'vitest';

import { isGhostSpec, safeGhostMapping } from '../../src/completion/ghostFix';

interface Ghost {
  from: number;
  content: string;
  providerId: string;
}

// the shape of JupyterLab's addMark (packages/completer/src/ghost.ts): it maps past the end
function ghostEffect() {
  return StateEffect.define<Ghost>({
    map: (old, change) => ({
      ...old,
      from: change.mapPos(old.from),
      to: change.mapPos(old.from + old.content.length)
    })
  });
}

// what jupysql-plugin's syntax highlighting does: an effect added to every transaction
const marker = StateEffect.define<null>();
const extender = EditorState.transactionExtender.of(() => ({ effects: marker.of(null) }));

const ghost = { from: 6, content: 'revenue', providerId: '@rsql-assistant/jupyterlab:inline' };

describe('the ghost text guard', () => {
  it('is needed: without it the ghost effect throws once an extender merges', () => {
    const addMark = ghostEffect();
    const state = EditorState.create({ doc: 'sales.', extensions: [extender] });
    expect(() => state.update({ effects: addMark.of(ghost) })).toThrow(RangeError);
  });

  it('lets the ghost effect through, its value intact', () => {
    const addMark = ghostEffect();
    const state = EditorState.create({ doc: 'sales.', extensions: [safeGhostMapping(), extender] });
    const tr = state.update({ effects: addMark.of(ghost) });
    const placed = tr.effects.find(e => e.is(addMark));
    expect(placed?.value).toMatchObject(ghost);
    expect(tr.effects.some(e => e.is(marker))).toBe(true);
  });

  it('maps a ghost inside the document exactly as before', () => {
    const inside = { ...ghost, from: 2, content: 'le' };
    const mapped = (guard: boolean) => {
      const addMark = ghostEffect();
      const extensions = guard ? [safeGhostMapping(), extender] : [extender];
      const state = EditorState.create({ doc: 'sales.revenue', extensions });
      const tr = state.update({ effects: addMark.of(inside) });
      return tr.effects.find(e => e.is(addMark))!.value;
    };
    expect(mapped(true)).toEqual(mapped(false));
    expect(mapped(true)).toMatchObject({ from: 2, to: 4 });
  });

  it('only guards what looks like a ghost spec', () => {
    expect(isGhostSpec(ghost)).toBe(true);
    expect(isGhostSpec({ from: 1, content: 'x' })).toBe(false);
    expect(isGhostSpec(null)).toBe(false);
  });
});
