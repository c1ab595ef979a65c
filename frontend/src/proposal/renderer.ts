/** The MIME renderer of a proposed cell: draws the view and carries out the one decision. */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import {
  Decision,
  DecisionOnce,
  MIME_TYPE,
  NewCodeCell,
  NOTES,
  newCodeCell,
  readProposal,
  recordedDecision
} from './model';
import { buildView } from './view';

/** Insert `cell` below the cell holding `output`; false when there is nowhere to put it. */
export type InsertBelow = (output: HTMLElement, cell: NewCodeCell) => boolean;

// Keyed by the output's model: every view of one output (a detached "new view for output"
// renders the same model) shares its one decision.
const decisions = new WeakMap<IRenderMime.IMimeModel, DecisionOnce>();

export class ProposalRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(private readonly insertBelow: InsertBelow) {
    super();
    this.addClass('rsql-proposal');
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const proposal = readProposal(model.data[MIME_TYPE]);
    const doc = this.node.ownerDocument;
    if (proposal === null) {
      this.node.textContent = 'A proposal this version cannot read; nothing inserted.';
      return Promise.resolve();
    }
    let decision = decisions.get(model);
    if (decision === undefined) {
      decision = new DecisionOnce(recordedDecision(model.metadata));
      decisions.set(model, decision);
    }
    const once = decision;
    const draw = (note?: string): void => {
      const state = { decided: once.decided, trusted: model.trusted, note };
      this.node.replaceChildren(buildView(doc, proposal, state, { accept, reject }));
    };
    // in the output's metadata, so the saved notebook keeps the decision
    const record = (what: Decision): void => {
      model.setData({ metadata: { ...model.metadata, [MIME_TYPE]: { decision: what } } });
    };
    const accept = (): void => {
      if (!model.trusted) {
        return; // someone else's notebook file: shown, not offered for insertion
      }
      let placed = true;
      const act = (): boolean => (placed = this.insertBelow(this.node, newCodeCell(proposal)));
      if (once.decide('accepted', act)) {
        draw();
        record('accepted');
      } else {
        draw(placed ? undefined : NOTES.nowhere);
      }
    };
    const reject = (): void => {
      if (once.decide('rejected')) {
        draw();
        record('rejected');
      }
    };
    draw();
    return Promise.resolve();
  }
}
