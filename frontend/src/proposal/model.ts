/**
 * A proposed cell as the kernel sends it (rsql_magic/agent/tools.py, ProposalView), and the
 * one decision a proposal may take. Pure: no JupyterLab import, so the unit tests load it bare.
 */

import { Mark, newMark, Origin, readOrigin } from '../provenance/mark';
import { hiddenCount, shownText } from '../hiddenCharacters';

export const MIME_TYPE = 'application/vnd.rsql.proposal+json';

/**
 * Lower ranks win. The same bundle carries the ipywidget view (rank -10 in
 * @jupyter-widgets/jupyterlab-manager), which can only offer the code to copy: this renderer,
 * which can insert the cell, goes first.
 */
export const RANK = -20;

export const LANGUAGES = ['python', 'sql', 'r'] as const;
export type Language = (typeof LANGUAGES)[number];

export interface Proposal {
  /** The new cell's source, as the kernel prepared it (`%%R` / `%%sql` on top when needed). */
  readonly code: string;
  readonly language: Language;
  readonly title: string;
  /** who wrote it: the agent's model and request (the accepted cell's provenance mark) */
  readonly origin: Origin;
}

export type Decision = 'accepted' | 'rejected';

export const NOTES: Readonly<Record<Decision | 'untrusted' | 'nowhere', string>> = {
  accepted: 'Inserted below; it has not run.',
  rejected: 'Rejected; nothing inserted.',
  untrusted:
    'This output comes from a notebook you have not trusted: Accept is off. Nothing has run.',
  nowhere: 'No open notebook to insert into; nothing inserted.'
};

/**
 * The proposal in a bundle's data, or null when it is not one (the data is untrusted). Its
 * hidden characters (./hidden) are written as escapes in the code and the title, so the code
 * drawn is the code Accept inserts; the kernel's proposals come so already.
 */
export function readProposal(data: unknown): Proposal | null {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return null;
  }
  const { code, language, title, provenance } = data as Record<string, unknown>;
  if (typeof code !== 'string' || code.trim() === '') {
    return null;
  }
  const lang = LANGUAGES.find(l => l === language);
  const lines = code.replace(/\r\n?/g, '\n'); // a line break, as every view draws it
  const hidden = hiddenCount(lines);
  const named = typeof title === 'string' && title.trim() ? shownText(title) : 'Proposed cell';
  const why = `${hidden} hidden character${hidden > 1 ? 's' : ''} shown as escapes`;
  // a proposal is the agent's whatever its bundle says of itself (an older kernel's: no model)
  const told = readOrigin(provenance);
  return {
    code: shownText(lines),
    language: lang ?? 'python',
    title: hidden ? `${named} · ${why}` : named,
    origin: {
      kind: 'agent',
      model: told?.model ?? null,
      requestId: told?.requestId ?? null
    }
  };
}

/** A code cell as nbformat writes one; never run, so no count and no outputs. */
// a type, not an interface: nbformat's cell types need an index signature
export type NewCodeCell = {
  cell_type: 'code';
  source: string;
  metadata: { rsql: { provenance: Mark } };
  execution_count: null;
  outputs: [];
};

/**
 * The cell Accept inserts: the code exactly as proposed, marked as the assistant's
 * (`rsql.provenance`, at `time`). The kernel already put the magic an R or SQL cell needs on
 * top (as `%%ask`'s inserted cells), so nothing is added here.
 */
export function newCodeCell(
  proposal: Proposal,
  time: string = new Date().toISOString()
): NewCodeCell {
  return {
    cell_type: 'code',
    source: proposal.code,
    metadata: { rsql: { provenance: newMark(proposal.origin, proposal.code, time) } },
    execution_count: null,
    outputs: []
  };
}

/** One decision per proposal: the first Accept or Reject that goes through is final. */
export class DecisionOnce {
  constructor(private _decided: Decision | null = null) {}

  get decided(): Decision | null {
    return this._decided;
  }

  /**
   * Take `what` if nothing was decided yet and `act` succeeds (an Accept with no notebook to
   * insert into is no decision). Returns whether it was taken; `act` runs at most once.
   */
  decide(what: Decision, act: () => boolean = () => true): boolean {
    if (this._decided !== null || !act()) {
      return false;
    }
    this._decided = what;
    return true;
  }
}

/** The decision recorded in an output's metadata (so a reopened notebook keeps it). */
export function recordedDecision(metadata: unknown): Decision | null {
  if (typeof metadata !== 'object' || metadata === null) {
    return null;
  }
  const mine = (metadata as Record<string, unknown>)[MIME_TYPE];
  if (typeof mine !== 'object' || mine === null) {
    return null;
  }
  const decision = (mine as Record<string, unknown>).decision;
  return decision === 'accepted' || decision === 'rejected' ? decision : null;
}
