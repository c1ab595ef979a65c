/** rsql-assistant's JupyterLab / Notebook 7 extension: one plugin per feature folder. */

import { JupyterFrontEndPlugin } from '@jupyterlab/application';

import { proposalPlugin } from './proposal';

const plugins: JupyterFrontEndPlugin<void>[] = [proposalPlugin];

export default plugins;
