/**
 * Inline completions (issue #38): ghost text from the proxy's {proxy}inline, knowing the
 * kernel's live frames, R objects and tables. Registers the provider with JupyterLab's inline
 * completer (Tab accepts and Escape dismisses: the completer's own shortcuts), reads this
 * plugin's settings, and adds the status bar item where there is a status bar (JupyterLab;
 * Notebook 7 has none, so the token is optional).
 */

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';
import { ICompletionProviderManager } from '@jupyterlab/completer';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';

import { getStatus, Requester } from './client';
import { safeGhostMapping } from './ghostFix';
import { RsqlInlineProvider } from './provider';
import { readSettings } from './settings';
import { StatusPoller, StatusWidget } from './status';

const PLUGIN_ID = '@rsql-assistant/jupyterlab:completion';

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
  optional: [ISettingRegistry, IStatusBar, IEditorExtensionRegistry],
  activate: (
    app: JupyterFrontEnd,
    manager: ICompletionProviderManager,
    registry: ISettingRegistry | null,
    statusBar: IStatusBar | null,
    editorExtensions: IEditorExtensionRegistry | null
  ) => {
    if (typeof manager.registerInlineProvider !== 'function') {
      // JupyterLab 4.0 has no inline completer (it came in 4.1)
      console.warn('rsql-assistant: this JupyterLab has no inline completer; completions off');
      return;
    }
    const request = requester(app.serviceManager.serverSettings);
    const widget = statusBar ? new StatusWidget() : null;
    let poller: StatusPoller | null = null;
    const provider = new RsqlInlineProvider({
      request,
      onError: error => poller?.errorReply(error.message)
    });
    poller = new StatusPoller({
      fetchStatus: () => getStatus(request),
      enabled: () => provider.settings.enabled,
      onView: view => widget?.display(view),
      onStatus: status => provider.setAvailable(status.on)
    });
    manager.registerInlineProvider(provider);
    // without it, an extension that extends every transaction (jupysql-plugin) stops all
    // ghost text from showing (ghostFix.ts says why)
    editorExtensions?.addExtension({
      name: 'rsql-assistant:ghost-text-guard',
      factory: () => EditorExtensionRegistry.createImmutableExtension(safeGhostMapping())
    });

    if (statusBar && widget) {
      statusBar.registerStatusItem(PLUGIN_ID, { item: widget, align: 'left', rank: 100 });
    }
    // Notebook 7 shows no status bar, but the status still pauses requests while off
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
