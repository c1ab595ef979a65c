/** rsql-assistant's JupyterLab / Notebook 7 extension: one plugin per feature folder. */

import { JupyterFrontEndPlugin } from '@jupyterlab/application';

import { completionPlugin } from './completion';
import { proposalPlugin } from './proposal';
import { provenancePlugin } from './provenance';

const plugins: JupyterFrontEndPlugin<void>[] = [proposalPlugin, completionPlugin, provenancePlugin];

export default plugins;
