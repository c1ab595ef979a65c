/**
 * Marks on a notebook's cells (issue 75): writing a cell's `rsql.provenance`, keeping its
 * counts up to date as the student edits, and the small mark drawn on each marked cell with
 * its tooltip. Structural types (a cell model's metadata and source, a cell widget's node), so
 * the unit tests drive it with plain objects; the plugin (./index) hands in JupyterLab's.
 */

import {
  addContribution,
  describeMark,
  Mark,
  markLabel,
  METADATA_KEY,
  newMark,
  Origin,
  readMark,
  withCounts
} from './mark';

interface Signal<T> {
  connect(slot: (sender: T, args: unknown) => void): boolean;
  disconnect(slot: (sender: T, args: unknown) => void): boolean;
}

/** What this module reads and writes of a cell's model (JupyterLab's ICellModel fits). */
export interface CellModelLike {
  readonly id: string;
  readonly type: string;
  readonly sharedModel: { getSource(): string };
  getMetadata(key: string): unknown;
  setMetadata(key: string, value: unknown): void;
  readonly contentChanged: Signal<CellModelLike>;
  readonly metadataChanged: Signal<CellModelLike>;
}

/** A cell widget: its node (where the mark goes) and its model. */
export interface CellWidgetLike {
  readonly node: HTMLElement;
  readonly model: CellModelLike;
}

export const MARK_CLASS = 'rsql-provenance-mark';
export const ASSISTED_CLASS = 'rsql-mod-assisted';

/** The cell's mark, if it has one the extension can read. */
export function markOf(model: CellModelLike): Mark | null {
  return readMark(model.getMetadata(METADATA_KEY));
}

function writeMark(model: CellModelLike, mark: Mark): void {
  const rsql = model.getMetadata(METADATA_KEY);
  const others = rsql && typeof rsql === 'object' && !Array.isArray(rsql) ? rsql : {};
  model.setMetadata(METADATA_KEY, { ...others, provenance: mark });
}

/** Mark a cell the assistant wrote whole (unless it is marked already: a cell is marked by
 * what made it). */
export function stampCell(model: CellModelLike, origin: Origin, time: string): boolean {
  if (model.type !== 'code' || markOf(model) !== null) {
    return false;
  }
  writeMark(model, newMark(origin, model.sharedModel.getSource(), time));
  return true;
}

/** Add what the assistant wrote into a cell: `lines`, as they read after it. */
export function addToCell(
  model: CellModelLike,
  origin: Origin,
  lines: readonly string[],
  time: string
): void {
  const source = model.sharedModel.getSource();
  writeMark(model, addContribution(markOf(model), origin, lines, source, time));
}

/** The lines of `source` that a text inserted at [start, end) wrote into, whole (a text that
 * ends with a line break does not touch the line after it). */
export function touchedLines(source: string, start: number, end: number): string[] {
  const from = start <= 0 ? 0 : source.lastIndexOf('\n', start - 1) + 1;
  const stop = source.indexOf('\n', Math.max(start, end - 1));
  return source.slice(from, stop < 0 ? source.length : stop).split('\n');
}

/** The lines an accepted completion `text` wrote, when `source` holds it right before the
 * cursor (where the inline completer puts what it accepts); null when it does not: the
 * suggestion accepted was another provider's, or the text is not there. */
export function acceptedLines(source: string, cursor: number, text: string): string[] | null {
  if (!text || cursor < text.length || source.slice(cursor - text.length, cursor) !== text) {
    return null;
  }
  return touchedLines(source, cursor - text.length, cursor);
}

/** Recount the cell's mark for its source now; written only when a count changed. */
export function refreshCounts(model: CellModelLike): void {
  const mark = markOf(model);
  if (mark === null) {
    return;
  }
  const counted = withCounts(mark, model.sharedModel.getSource());
  if (counted !== mark) {
    writeMark(model, counted);
  }
}

/** Draw (or take away) the mark on a cell widget: a small label, its tooltip as text. */
export function drawMark(cell: CellWidgetLike): void {
  const mark = markOf(cell.model);
  let node = cell.node.querySelector<HTMLElement>(`:scope > .${MARK_CLASS}`);
  cell.node.classList.toggle(ASSISTED_CLASS, mark !== null);
  if (mark === null) {
    node?.remove();
    return;
  }
  if (!node) {
    node = cell.node.ownerDocument.createElement('div');
    node.className = MARK_CLASS;
    cell.node.appendChild(node);
  }
  node.textContent = markLabel(mark); // from a notebook file: text, never markup
  node.title = describeMark(mark);
  node.dataset.kind = mark.kind;
}

/**
 * Keeps one notebook's marks: each marked cell's counts after the student's edits (a moment
 * after the last keystroke), and each cell's drawn mark after its metadata changes.
 */
export class NotebookMarks {
  constructor(
    private readonly _cells: () => readonly CellWidgetLike[],
    private readonly _delayMs = 400
  ) {}

  /** Look at the cells again: hook the new ones, draw every mark. */
  update(): void {
    for (const cell of this._cells()) {
      if (!this._hooked.has(cell.model)) {
        this._hook(cell.model);
      }
      drawMark(cell);
    }
  }

  dispose(): void {
    for (const [model, slots] of this._hooked) {
      model.contentChanged.disconnect(slots.content);
      model.metadataChanged.disconnect(slots.metadata);
    }
    this._hooked.clear();
    this._timers.forEach(timer => clearTimeout(timer));
    this._timers.clear();
  }

  private _hook(model: CellModelLike): void {
    const content = () => {
      if (markOf(model) === null) {
        return; // most cells carry no mark: nothing to count
      }
      clearTimeout(this._timers.get(model));
      this._timers.set(
        model,
        setTimeout(() => {
          this._timers.delete(model);
          refreshCounts(model);
        }, this._delayMs)
      );
    };
    const metadata = () => {
      for (const cell of this._cells()) {
        if (cell.model === model) {
          drawMark(cell);
        }
      }
    };
    model.contentChanged.connect(content);
    model.metadataChanged.connect(metadata);
    this._hooked.set(model, { content, metadata });
  }

  private readonly _hooked = new Map<
    CellModelLike,
    { content: () => void; metadata: () => void }
  >();
  private readonly _timers = new Map<CellModelLike, ReturnType<typeof setTimeout>>();
}
