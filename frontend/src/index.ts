/** rsql-assistant's JupyterLab / Notebook 7 extension: one plugin per feature folder. */

import { JupyterFrontEndPlugin } from '@jupyterlab/application';

import { completionPlugin } from './completion';
import { proposalPlugin } from './proposal';

const plugins: JupyterFrontEndPlugin<void>[] = [proposalPlugin, completionPlugin];

export default plugins;
