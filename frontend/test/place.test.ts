import { describe, expect, it } from 'vitest';

import { placeBelow } from '../src/proposal/place';

function notebook(cells: number, active = 0) {
  const widgets = Array.from({ length: cells }, () => ({ node: document.createElement('div') }));
  return { widgets, activeCellIndex: active };
}

describe('where Accept puts the new cell', () => {
  it('goes below the cell whose output holds the proposal, not below the active cell', () => {
    const other = notebook(2);
    const nb = notebook(4, 3);
    const output = document.createElement('div');
    nb.widgets[1].node.append(document.createElement('div'));
    nb.widgets[1].node.firstChild!.appendChild(output);
    expect(placeBelow([other, nb], other, output)).toEqual({ notebook: nb, index: 2 });
  });

  it('goes below the active cell when the output is in no notebook (a side panel)', () => {
    const nb = notebook(3, 0);
    const outside = document.createElement('div');
    expect(placeBelow([nb], nb, outside)).toEqual({ notebook: nb, index: 1 });
  });

  it('has nowhere to go without a notebook', () => {
    expect(placeBelow([], null, document.createElement('div'))).toBeNull();
  });
});
