/**
 * What a request takes from the widget the inline completer runs in. The completer passes a
 * plain Widget (a notebook panel, a console, a file editor), so this reads it structurally:
 * a notebook gives its previous code cells and metadata, anything else gives nothing.
 */

interface CellLike {
  readonly model?: {
    readonly type?: string;
    readonly sharedModel?: { getSource(): string };
  };
}

interface NotebookPanelLike {
  readonly content?: {
    readonly widgets?: readonly CellLike[];
    readonly activeCellIndex?: number;
  };
  readonly model?: { getMetadata?(key: string): unknown } | null;
}

function asPanel(widget: unknown): NotebookPanelLike | null {
  return widget && typeof widget === 'object' ? (widget as NotebookPanelLike) : null;
}

/** The sources of the code cells above the active one, oldest first (all of them). */
export function previousCells(widget: unknown): string[] {
  const content = asPanel(widget)?.content;
  const cells = content?.widgets;
  const active = content?.activeCellIndex;
  if (!Array.isArray(cells) || typeof active !== 'number' || active <= 0) {
    return [];
  }
  const sources: string[] = [];
  for (const cell of cells.slice(0, Math.min(active, cells.length))) {
    const model = (cell as CellLike).model;
    if (model?.type === 'code' && model.sharedModel) {
      sources.push(model.sharedModel.getSource());
    }
  }
  return sources;
}

/** The notebook's language from its saved metadata (when the kernel does not say in time). */
export function metadataLanguage(widget: unknown): string | null {
  const model = asPanel(widget)?.model;
  if (!model || typeof model.getMetadata !== 'function') {
    return null;
  }
  for (const [key, field] of [
    ['language_info', 'name'],
    ['kernelspec', 'language']
  ] as const) {
    const value = model.getMetadata(key) as Record<string, unknown> | undefined;
    if (value && typeof value[field] === 'string') {
      return value[field] as string;
    }
  }
  return null;
}
