/**
 * Agent mode's proposed cells (issue #37): a renderer for application/vnd.rsql.proposal+json
 * whose Accept inserts the cell below and never runs it. A kernel cannot insert a cell from a
 * widget click (set_next_input rides on a running cell's reply), the frontend can.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, Notebook } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { MIME_TYPE, RANK } from './model';
import { placeBelow } from './place';
import { InsertBelow, ProposalRenderer } from './renderer';

function insertInto(tracker: INotebookTracker): InsertBelow {
  return (output, cell) => {
    const notebooks: Notebook[] = [];
    tracker.forEach(panel => notebooks.push(panel.content));
    const place = placeBelow(notebooks, tracker.currentWidget?.content ?? null, output);
    const model = place?.notebook.model;
    if (!place || !model) {
      return false;
    }
    // a model edit only: no command, no kernel message, so nothing can run it
    model.sharedModel.insertCell(place.index, cell);
    return true;
  };
}

export const proposalPlugin: JupyterFrontEndPlugin<void> = {
  id: '@rsql-assistant/jupyterlab:proposal',
  description: "Agent mode's proposed cells: Accept inserts the cell below, never runs it.",
  autoStart: true,
  requires: [IRenderMimeRegistry, INotebookTracker],
  activate: (_app: JupyterFrontEnd, rendermime: IRenderMimeRegistry, tracker: INotebookTracker) => {
    const insertBelow = insertInto(tracker);
    // Added before any notebook opens: each notebook's registry is a clone of this one.
    // Safe: it renders text only, so an untrusted notebook's proposal shows (Accept off).
    rendermime.addFactory(
      {
        safe: true,
        mimeTypes: [MIME_TYPE],
        defaultRank: RANK,
        createRenderer: () => new ProposalRenderer(insertBelow)
      },
      RANK
    );
  }
};
