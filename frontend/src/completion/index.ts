/**
 * Inline completions (issue #38): ghost text from the proxy's {proxy}inline, knowing the
 * kernel's live frames, R objects and tables. Registers the provider with JupyterLab's inline
 * completer (Tab accepts and Escape dismisses: the completer's own shortcuts), reads this
 * plugin's settings, and adds the status bar item where there is a status bar (JupyterLab;
 * Notebook 7 has none, so the token is optional: there the item goes into each notebook's
 * toolbar, shown while the proxy keeps completions off). Watches every notebook's kernel, so
 * its live context is asked right after each execution and kept (liveContext.ts).
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';
import { ICompletionProviderManager } from '@jupyterlab/completer';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';

import { acceptedLines, addToCell, CellModelLike } from '../provenance/cells';
import { getStatus, Requester } from './client';
import { safeGhostMapping } from './ghostFix';
import { LiveContextCache, WatchedKernel } from './liveContext';
import { RsqlInlineProvider } from './provider';
import { readSettings } from './settings';
import { StatusPoller, StatusView, StatusWidget } from './status';

const PLUGIN_ID = '@rsql-assistant/jupyterlab:completion';
const ACCEPT_COMMAND = 'inline-completer:accept';

function requester(settings: ServerConnection.ISettings): Requester {
  const base = settings.baseUrl.endsWith('/') ? settings.baseUrl : `${settings.baseUrl}/`;
  // makeRequest adds the XSRF header and the token, and passes init.signal on to fetch
  return (path, init) => ServerConnection.makeRequest(base + path, init, settings);
}

export const completionPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Inline completions from the rsql proxy, with the kernel’s live context.',
  autoStart: true,
  requires: [ICompletionProviderManager],
  optional: [ISettingRegistry, IStatusBar, IEditorExtensionRegistry, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    manager: ICompletionProviderManager,
    registry: ISettingRegistry | null,
    statusBar: IStatusBar | null,
    editorExtensions: IEditorExtensionRegistry | null,
    notebooks: INotebookTracker | null
  ) => {
    if (typeof manager.registerInlineProvider !== 'function') {
      // JupyterLab 4.0 has no inline completer (it came in 4.1)
      console.warn('rsql-assistant: this JupyterLab has no inline completer; completions off');
      return;
    }
    const request = requester(app.serviceManager.serverSettings);
    const widget = statusBar ? new StatusWidget() : null;
    // no status bar (Notebook 7): one item in each notebook's toolbar, all showing the same
    const toolbarItems = new Set<StatusWidget>();
    let lastView: StatusView | null = null;
    let poller: StatusPoller | null = null;
    const live = new LiveContextCache();
    const provider = new RsqlInlineProvider({
      request,
      liveContext: live,
      onError: error => poller?.errorReply(error.message)
    });
    poller = new StatusPoller({
      fetchStatus: () => getStatus(request),
      enabled: () => provider.settings.enabled,
      onView: view => {
        lastView = view;
        widget?.display(view);
        toolbarItems.forEach(item => item.display(view));
      },
      onStatus: status => {
        provider.setAvailable(status.on);
        provider.setModel(status.model);
      }
    });
    const attach = (panel: NotebookPanel) => {
      const session = panel.sessionContext;
      const watch = () => live.watch(session.session?.kernel as unknown as WatchedKernel);
      session.kernelChanged.connect(watch);
      watch();
      if (!statusBar) {
        const item = new StatusWidget({ inToolbar: true });
        panel.toolbar.addItem('rsql-inline-status', item);
        toolbarItems.add(item);
        item.disposed.connect(() => toolbarItems.delete(item));
        if (lastView) {
          item.display(lastView);
        }
      }
    };
    notebooks?.forEach(attach);
    notebooks?.widgetAdded.connect((_, panel) => attach(panel));
    manager.registerInlineProvider(provider);
    // an accepted completion (Tab, or the completer's accept button) marks its cell as partly
    // the assistant's (issue 75): the inline completer tells its providers nothing of it
    app.commands.commandExecuted.connect((_, args) => {
      const shown = provider.shown;
      const cell = notebooks?.activeCell;
      if (args.id !== ACCEPT_COMMAND || !shown || !cell || cell.model.type !== 'code') {
        return;
      }
      const editor = cell.editor;
      const cursor = editor ? editor.getOffsetAt(editor.getCursorPosition()) : -1;
      const lines = acceptedLines(cell.model.sharedModel.getSource(), cursor, shown.text);
      if (lines) {
        const origin = { kind: 'inline' as const, model: shown.model, requestId: shown.requestId };
        addToCell(cell.model as unknown as CellModelLike, origin, lines, new Date().toISOString());
      }
    });
    // without it, an extension that extends every transaction (jupysql-plugin) stops all
    // ghost text from showing (ghostFix.ts says why)
    editorExtensions?.addExtension({
      name: 'rsql-assistant:ghost-text-guard',
      factory: () => EditorExtensionRegistry.createImmutableExtension(safeGhostMapping())
    });

    if (statusBar && widget) {
      statusBar.registerStatusItem(PLUGIN_ID, { item: widget, align: 'left', rank: 100 });
    }
    // the status pauses requests while off (and fills Notebook 7's toolbar items)
    poller.start();

    if (registry) {
      registry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () => {
            provider.updateSettings(readSettings(settings.composite));
            poller?.settingsChanged();
          };
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => {
          console.warn('rsql-assistant: completion settings not loaded; using defaults', reason);
        });
    }
  }
};
