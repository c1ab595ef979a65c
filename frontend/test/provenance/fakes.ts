// fakes shared by the provenance tests (no tests here: vitest runs *.test.ts only)
import { Signal } from '@lumino/signaling';

import type { CellModelLike, CellWidgetLike } from '../../src/provenance/cells';
import type { NotebookModelLike } from '../../src/provenance/kernel';

export interface FakeCell extends CellModelLike {
  setSource(source: string): void;
  metadata: Record<string, unknown>;
}

/** A cell model as JupyterLab's: its source, its metadata, a signal for each change. */
export function fakeCell(
  source: string,
  id = 'c1',
  metadata: Record<string, unknown> = {}
): FakeCell {
  let text = source;
  const meta: Record<string, unknown> = { ...metadata };
  const cell = {
    id,
    type: 'code',
    metadata: meta,
    sharedModel: { getSource: () => text },
    getMetadata: (key: string) => meta[key],
    setMetadata(key: string, value: unknown) {
      meta[key] = JSON.parse(JSON.stringify(value)); // stored as JSON, as a notebook does
      metadataChanged.emit(undefined);
    },
    setSource(value: string) {
      text = value;
      contentChanged.emit(undefined);
    }
  } as unknown as FakeCell;
  const contentChanged = new Signal<FakeCell, unknown>(cell);
  const metadataChanged = new Signal<FakeCell, unknown>(cell);
  Object.assign(cell, { contentChanged, metadataChanged });
  return cell;
}

/** A cell widget: a node in the document, and its model. */
export function fakeWidget(model: CellModelLike): CellWidgetLike {
  const node = document.createElement('div');
  node.className = 'jp-Cell';
  document.body.appendChild(node);
  return { node, model };
}

/** A notebook's model over `cells`, whose insertCell makes a fake cell of what it is given. */
export function fakeNotebook(cells: FakeCell[]): NotebookModelLike & { list: FakeCell[] } {
  const list = cells;
  return {
    list,
    cells: { get length() { return list.length; }, get: (i: number) => list[i] },
    sharedModel: {
      insertCell(index: number, cell: Record<string, unknown>) {
        const metadata = cell.metadata as Record<string, unknown>;
        const made = fakeCell(String(cell.source), `new-${list.length}`, metadata);
        list.splice(index, 0, made);
        return made;
      }
    }
  };
}
