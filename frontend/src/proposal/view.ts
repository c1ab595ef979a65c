/**
 * The proposal's DOM: title, code, Accept, Reject and a note. Every string from the bundle is
 * model output (and may come from someone else's notebook file): it goes in as textContent,
 * never as markup.
 */

import { Decision, NOTES, Proposal } from './model';

export interface ViewState {
  decided: Decision | null;
  /** False for an output of an untrusted notebook: shown, but Accept is off. */
  trusted: boolean;
  /** A note that overrides the decision's (e.g. "no open notebook"). */
  note?: string;
}

export interface ViewActions {
  accept(): void;
  reject(): void;
}

function element<K extends keyof HTMLElementTagNameMap>(
  doc: Document,
  tag: K,
  className: string,
  text = ''
): HTMLElementTagNameMap[K] {
  const node = doc.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

/** Build the view; `doc` is the document to create nodes in. */
export function buildView(
  doc: Document,
  proposal: Proposal,
  state: ViewState,
  actions: ViewActions
): HTMLElement {
  const root = element(doc, 'div', 'rsql-proposal-view');
  root.dataset.language = proposal.language;
  const head = element(doc, 'div', 'rsql-proposal-title');
  head.append(
    element(doc, 'b', '', proposal.title),
    doc.createTextNode(' · it runs only if you accept it and then run it')
  );
  const code = element(doc, 'pre', 'rsql-proposal-code', proposal.code);
  const accept = element(doc, 'button', 'jp-mod-styled jp-mod-accept rsql-proposal-accept', 'Accept');
  const reject = element(doc, 'button', 'jp-mod-styled jp-mod-reject rsql-proposal-reject', 'Reject');
  accept.type = reject.type = 'button';
  accept.title = 'Insert this cell below (it does not run)';
  reject.title = 'Dismiss this proposal';
  accept.disabled = state.decided !== null || !state.trusted;
  reject.disabled = state.decided !== null;
  accept.addEventListener('click', () => actions.accept());
  reject.addEventListener('click', () => actions.reject());
  const buttons = element(doc, 'div', 'rsql-proposal-actions');
  buttons.append(accept, reject);
  const text =
    state.note ?? (state.decided ? NOTES[state.decided] : state.trusted ? '' : NOTES.untrusted);
  root.append(head, code, buttons, element(doc, 'div', 'rsql-proposal-note', text));
  return root;
}
