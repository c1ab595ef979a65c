/**
 * Where Accept puts the new cell: below the notebook cell whose output holds the proposal, else
 * (an output in a side panel or a detached view) below the current notebook's active cell.
 * Structural types, so the unit tests can pass plain objects.
 */

export interface CellLike {
  readonly node: HTMLElement;
}

export interface NotebookLike {
  readonly widgets: ReadonlyArray<CellLike>;
  readonly activeCellIndex: number;
}

export interface Place<N extends NotebookLike> {
  notebook: N;
  /** The index the new cell gets. */
  index: number;
}

export function placeBelow<N extends NotebookLike>(
  notebooks: Iterable<N>,
  current: N | null,
  output: Node
): Place<N> | null {
  for (const notebook of notebooks) {
    const at = notebook.widgets.findIndex(cell => cell.node.contains(output));
    if (at >= 0) {
      return { notebook, index: at + 1 };
    }
  }
  if (current && current.activeCellIndex >= 0) {
    return { notebook: current, index: current.activeCellIndex + 1 };
  }
  return null;
}
