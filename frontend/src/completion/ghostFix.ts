/**
 * A guard for JupyterLab's ghost text against other editor extensions.
 *
 * JupyterLab's inline completer places its ghost text with a state effect whose `map` maps
 * `from + content.length`: a position past the end of the document whenever the suggestion is
 * longer than the text after the cursor (nearly always). CodeMirror only maps an effect when a
 * transaction is merged with another, which happens whenever some extension's
 * `transactionExtender` adds to every transaction: jupysql-plugin's does (its %%sql
 * highlighting, installed with `rsql-assistant[all]`). The map then throws a RangeError and no
 * ghost text ever shows. This filter, which runs before any extender, finds the ghost's effect
 * and makes its type's map clamp positions to the document. It changes nothing else: the
 * effect's value is JupyterLab's, and an effect that maps cleanly maps the same.
 */

import { ChangeDesc, EditorState, Extension, StateEffect } from '@codemirror/state';

type MapFn = (value: unknown, change: ChangeDesc) => unknown;

// effect types already guarded (a WeakSet: types belong to JupyterLab's module)
const guarded = new WeakSet<object>();

/** JupyterLab's ghost text spec (IGhostText): an offset, its content and the provider. */
export function isGhostSpec(value: unknown): boolean {
  if (!value || typeof value !== 'object') {
    return false;
  }
  const spec = value as Record<string, unknown>;
  return (
    typeof spec.from === 'number' &&
    typeof spec.content === 'string' &&
    typeof spec.providerId === 'string'
  );
}

/** A view of `change` whose mapPos takes any position, clamped to the mapped document. */
function clamping(change: ChangeDesc): ChangeDesc {
  const view = Object.create(change) as ChangeDesc & { mapPos: ChangeDesc['mapPos'] };
  const clamp = (pos: number) => Math.min(Math.max(0, pos), change.length);
  view.mapPos = ((pos: number, assoc = -1, mode?: never) =>
    mode === undefined
      ? change.mapPos(clamp(pos), assoc)
      : change.mapPos(clamp(pos), assoc, mode)) as ChangeDesc['mapPos'];
  return view;
}

/** Make the type of a ghost text effect map safely (once per type). */
export function guardEffect(effect: StateEffect<unknown>): void {
  // `type` is CodeMirror's internal field; its `map` is a plain property set at definition
  const type = (effect as unknown as { type?: { map?: MapFn } }).type;
  if (!type || typeof type.map !== 'function' || guarded.has(type)) {
    return;
  }
  const original = type.map;
  type.map = (value, change) => original(value, clamping(change));
  guarded.add(type);
}

/** The editor extension: a transaction filter that guards ghost text effects as they pass. */
export function safeGhostMapping(): Extension {
  return EditorState.transactionFilter.of(tr => {
    for (const effect of tr.effects) {
      if (isGhostSpec(effect.value)) {
        guardEffect(effect);
      }
    }
    return tr;
  });
}
