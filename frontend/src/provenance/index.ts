/**
 * Cells that say the assistant wrote them (issue 75): every cell the assistant creates or fills
 * carries `rsql.provenance` in its metadata (./mark), a small mark with a tooltip (./cells),
 * and counts kept up to date as the student edits. A kernel cannot set a cell's metadata, so
 * this plugin does, from what the kernel tells it (./kernel); the proposal's Accept and an
 * accepted inline completion write theirs where they insert (../proposal, ../completion).
 * On reload the metadata is in the file and the marks are drawn from it; a frontend without
 * this extension (VS Code) keeps the metadata it finds but adds none, and a batch run
 * (nbconvert, papermill) inserts no cell at all.
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker, Notebook, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

import { CellModelLike, CellWidgetLike, NotebookMarks } from './cells';
import { KernelCells, KernelLike, NotebookLike } from './kernel';

function attach(panel: NotebookPanel, kernels: Map<Notebook, KernelCells>): void {
  const notebook = panel.content;
  const marks = new NotebookMarks(() => notebook.widgets as unknown as readonly CellWidgetLike[]);
  // after the notebook made its widgets for the cells that changed
  const update = () => setTimeout(() => marks.update(), 0);
  let model = notebook.model;
  const follow = () => {
    model?.cells.changed.disconnect(update);
    model = notebook.model;
    model?.cells.changed.connect(update);
    update();
  };
  notebook.modelChanged.connect(follow);
  follow();
  void panel.context.ready.then(update);

  const cells = new KernelCells(notebook as unknown as NotebookLike);
  kernels.set(notebook, cells);
  const session = panel.sessionContext;
  const watch = () => {
    const kernel = session.session?.kernel ?? null;
    cells.watch(kernel as unknown as KernelLike | null);
  };
  session.kernelChanged.connect(watch);
  watch();
  panel.disposed.connect(() => {
    marks.dispose();
    cells.watch(null);
    kernels.delete(notebook);
  });
}

export const provenancePlugin: JupyterFrontEndPlugin<void> = {
  id: '@rsql-assistant/jupyterlab:provenance',
  description: 'Marks the cells the assistant wrote (rsql.provenance) and keeps their counts.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (_app: JupyterFrontEnd, tracker: INotebookTracker) => {
    const kernels = new Map<Notebook, KernelCells>();
    tracker.forEach(panel => attach(panel, kernels));
    tracker.widgetAdded.connect((_, panel) => attach(panel, kernels));
    NotebookActions.executed.connect((_, { notebook, cell }) => {
      kernels.get(notebook)?.executed(cell.model as unknown as CellModelLike);
    });
  }
};
