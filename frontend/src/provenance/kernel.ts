/**
 * What the kernel tells the notebook of the cells it has the assistant write (issue 75), read
 * for one notebook (rsql_magic/session/cells.py is the kernel's side):
 *
 * - From a running cell (`%%ask --insert`, `%%sql_ai --emit`): the execute reply carries
 *   `set_next_input`, which JupyterLab turns into a cell below, and beside it our payload
 *   `rsql_provenance` with the same text and who wrote it. The reply is seen here as it arrives
 *   (before JupyterLab handles it); once the cell has run (NotebookActions.executed), the cell
 *   just below it holding exactly that text is marked.
 * - From a click (the chat panel's Insert): a comm, `rsql.cells`, which the kernel opens from a
 *   running cell and this answers `ready`; an insert then comes as a message, and the cell is
 *   inserted here, below the cell the kernel names (else the active one), marked, and never run.
 *
 * Everything from the kernel is checked before use: the text is a string within a bound, its
 * hidden characters shown as escapes as a proposal's are, and who wrote it is one of our kinds.
 */

import { shownText } from '../hiddenCharacters';
import { CellModelLike, stampCell } from './cells';
import { newMark, Origin, readOrigin } from './mark';

export const PAYLOAD_SOURCE = 'rsql_provenance';
export const COMM_TARGET = 'rsql.cells';
export const MAX_CODE = 200_000;
const MAX_PENDING = 8;

interface Message {
  readonly header: { readonly msg_type: string };
  readonly content: unknown;
}

/** What this module uses of a kernel connection (JupyterLab's IKernelConnection fits). */
export interface KernelLike {
  readonly anyMessage: {
    connect(slot: (sender: unknown, args: { msg: Message; direction: string }) => void): boolean;
    disconnect(
      slot: (sender: unknown, args: { msg: Message; direction: string }) => void
    ): boolean;
  };
  registerCommTarget(
    name: string,
    callback: (comm: CommLike, msg: Message) => void | PromiseLike<void>
  ): void;
}

export interface CommLike {
  send(data: Record<string, unknown>): unknown;
  onMsg: (msg: { content: { data?: unknown } }) => void | PromiseLike<void>;
}

/** A notebook's model as this module needs it (JupyterLab's NotebookModel fits). */
export interface NotebookModelLike {
  readonly cells: { readonly length: number; get(index: number): CellModelLike };
  readonly sharedModel: { insertCell(index: number, cell: Record<string, unknown>): unknown };
}

export interface NotebookLike {
  readonly model: NotebookModelLike | null;
  readonly activeCellIndex: number;
}

interface Pending {
  readonly text: string;
  readonly origin: Origin;
}

/** The payload of ours in an execute reply's content, if it is one. */
export function readPayload(content: unknown): Pending | null {
  const payload = (content as { payload?: unknown } | null)?.payload;
  if (!Array.isArray(payload)) {
    return null;
  }
  for (const item of payload) {
    const fields = (item && typeof item === 'object' ? item : {}) as Record<string, unknown>;
    if (fields.source === PAYLOAD_SOURCE) {
      const { text, provenance } = fields;
      const origin = readOrigin(provenance);
      if (typeof text === 'string' && text.length <= MAX_CODE && origin) {
        return { text, origin };
      }
    }
  }
  return null;
}

function indexOf(model: NotebookModelLike, cell: CellModelLike): number {
  for (let i = 0; i < model.cells.length; i++) {
    if (model.cells.get(i) === cell) {
      return i;
    }
  }
  return -1;
}

/** One notebook's side of the kernel's cells (see the module docstring). */
export class KernelCells {
  constructor(
    private readonly _notebook: NotebookLike,
    private readonly _now: () => string = () => new Date().toISOString()
  ) {}

  /** Follow `kernel` (the notebook's new one, or none): its replies and its comm. */
  watch(kernel: KernelLike | null): void {
    this._kernel?.anyMessage.disconnect(this._onMessage);
    this._kernel = kernel;
    this._pending = [];
    if (!kernel) {
      return;
    }
    kernel.anyMessage.connect(this._onMessage);
    kernel.registerCommTarget(COMM_TARGET, comm => {
      comm.onMsg = msg => this._onCommMsg(comm, msg.content.data);
      comm.send({ ready: true });
    });
  }

  /** A cell of this notebook has run (NotebookActions.executed): mark the cell JupyterLab
   * inserted below it from the reply's set_next_input, if it holds our payload's text. */
  executed(cell: CellModelLike): boolean {
    const model = this._notebook.model;
    if (!model || !this._pending.length) {
      return false;
    }
    const below = indexOf(model, cell) + 1;
    if (below <= 0 || below >= model.cells.length) {
      return false;
    }
    const inserted = model.cells.get(below);
    const source = inserted.sharedModel.getSource();
    // the newest payload with this text (another cell's reply may have come meanwhile: the
    // replies of a run of cells arrive before each cell's end is told)
    const at = this._pending.map(p => p.text).lastIndexOf(source);
    if (at < 0) {
      return false;
    }
    const [match] = this._pending.splice(at, 1);
    return stampCell(inserted, match.origin, this._now());
  }

  /** Insert a cell as the kernel asked from a click; its answer to the kernel. */
  insert(data: unknown): { inserted: boolean; why?: string } {
    const ask = (data as { insert?: unknown } | null)?.insert;
    const { code, below, provenance } = (ask ?? {}) as Record<string, unknown>;
    const origin = readOrigin(provenance);
    const model = this._notebook.model;
    if (typeof code !== 'string' || !code.trim() || code.length > MAX_CODE || !origin) {
      return { inserted: false, why: 'not a cell this notebook takes' };
    }
    if (!model) {
      return { inserted: false, why: 'no notebook is open' };
    }
    let at = -1;
    if (typeof below === 'string') {
      for (let i = 0; i < model.cells.length; i++) {
        if (model.cells.get(i).id === below) {
          at = i + 1;
        }
      }
    }
    if (at < 0) {
      const active = this._notebook.activeCellIndex;
      at = active >= 0 ? active + 1 : model.cells.length;
    }
    // as a proposal's: hidden characters as escapes, so the cell reads as it runs
    const source = shownText(code.replace(/\r\n?/g, '\n'));
    const mark = newMark(origin, source, this._now());
    // a model edit only: no command, no kernel message, so nothing can run it
    model.sharedModel.insertCell(Math.min(at, model.cells.length), {
      cell_type: 'code',
      source,
      metadata: { trusted: false, rsql: { provenance: mark } }
    });
    return { inserted: true };
  }

  private _onCommMsg(comm: CommLike, data: unknown): void {
    const id = (data as { id?: unknown } | null)?.id;
    if (typeof id !== 'number') {
      return;
    }
    comm.send({ id, ...this.insert(data) });
  }

  private readonly _onMessage = (_: unknown, args: { msg: Message; direction: string }) => {
    const { msg, direction } = args;
    if (direction !== 'recv' || msg.header.msg_type !== 'execute_reply') {
      return;
    }
    const found = readPayload(msg.content);
    if (found) {
      // a reply whose cell JupyterLab did not insert (replaced, or deleted meanwhile) is
      // forgotten after a few: a later cell must be the same text to take its mark anyway
      this._pending = [...this._pending, found].slice(-MAX_PENDING);
    }
  };

  private _kernel: KernelLike | null = null;
  private _pending: Pending[] = [];
}
