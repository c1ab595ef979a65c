/**
 * The status bar item: "rsql ✓" when inline completions are on, "rsql: off (reason)" when the
 * proxy (GET {proxy}inline) or the user's settings turn them off; the proxy's message is the
 * tooltip. In a course's tutor mode (issue 75) it says "tutor", with the admin's message in the
 * tooltip; where a course log keeps the user's requests it says "logged", with the notice in the
 * tooltip (a student who uses only the editor is told too). Drawn with textContent only: the
 * messages come from a server and are never markup.
 */

import { Widget } from '@lumino/widgets';

import { shownText } from '../hiddenCharacters';
import type { InlineCourseLog, InlineStatus, InlineTutor } from './client';

export interface StatusView {
  readonly text: string;
  readonly title: string;
  readonly on: boolean;
  /** a tutor window is in force: shown even where the item hides while completions are on */
  readonly tutor?: boolean;
  /** a course log keeps the user's requests: shown even where the item hides while they are on */
  readonly logged?: boolean;
}

/** Tutor mode in a line of the tooltip: the window, until when, and the admin's message. */
export function tutorText(tutor: InlineTutor): string {
  const until = tutor.endsAtLocal ? `, until ${tutor.endsAtLocal}` : '';
  const said = tutor.message || 'hints, questions and partial code, not whole solutions';
  const names = tutor.names ? 'completions offer names only' : 'no completions';
  return shownText(`Tutor mode (window ${tutor.window || '?'}${until}): ${said}. In it, ${names}.`);
}

function withTutor(view: StatusView, tutor: InlineTutor | null | undefined): StatusView {
  if (!tutor) {
    return view;
  }
  const text = view.on ? 'rsql ✓ tutor' : `${view.text} · tutor`;
  return { text, title: `${tutorText(tutor)}\n${view.title}`, on: view.on, tutor: true };
}

// a reason is a word of the contract ("window", "off", "budget", "no_model"); anything else
// from a server is shown as "off", never as whatever it says
const REASON = /^[a-z_]{1,20}$/;

export const OFF_BY_SETTINGS = 'rsql: off (settings)';

export interface StatusInput {
  /** the last GET answer, or null when none came */
  readonly status: InlineStatus | null;
  /** why the last GET failed, if it did */
  readonly problem: string | null;
  /** the last error reply's message, shown in the tooltip */
  readonly lastError: string | null;
  /** the user's own setting */
  readonly enabled: boolean;
}

/** The course log's notice as the tooltip's first line, and "logged" in the item's words. */
function withCourseLog(view: StatusView, log: InlineCourseLog | null | undefined): StatusView {
  if (!log) {
    return view;
  }
  const course = log.course ? ` (${log.course})` : '';
  return {
    ...view,
    text: `${view.text} · logged`,
    title: `${shownText(log.notice + course)}\n${view.title}`,
    logged: true
  };
}

export function describeStatus(input: StatusInput): StatusView {
  const view = withTutor(describeWithoutTutor(input), input.status?.tutor);
  return withCourseLog(view, input.status?.courseLog);
}

function describeWithoutTutor(input: StatusInput): StatusView {
  if (!input.enabled) {
    return {
      text: OFF_BY_SETTINGS,
      title:
        'Inline completions are turned off in Settings → rsql-assistant: inline completions.',
      on: false
    };
  }
  const status = input.status;
  if (!status) {
    return {
      text: 'rsql: off (unreachable)',
      title: input.problem || input.lastError || 'The rsql proxy did not answer.',
      on: false
    };
  }
  if (status.on) {
    const base =
      status.message || `Inline completions are on${status.model ? ` (${status.model})` : ''}.`;
    return {
      text: 'rsql ✓',
      title: input.lastError ? `${base}\nLast error: ${input.lastError}` : base,
      on: true
    };
  }
  const reason = status.reason && REASON.test(status.reason) ? status.reason : 'off';
  return {
    text: `rsql: off (${reason})`,
    title: status.message || input.lastError || 'Inline completions are off.',
    on: false
  };
}

/**
 * The item's widget: a text span and a tooltip. In a notebook's toolbar (Notebook 7, which has
 * no status bar) it shows while the proxy keeps completions off, so it says why where the
 * user looks, and while tutor mode is in force or a course log keeps the user's requests; it is
 * gone while they are on or the user turned them off.
 */
export class StatusWidget extends Widget {
  constructor(options: { readonly inToolbar?: boolean } = {}) {
    super();
    this._inToolbar = options.inToolbar ?? false;
    this.addClass('rsql-inline-status');
    if (this._inToolbar) {
      this.addClass('rsql-mod-toolbar');
      this.hide();
    }
    this.node.textContent = 'rsql …';
  }

  display(view: StatusView): void {
    this.node.textContent = view.text;
    this.node.title = view.title;
    this.toggleClass('rsql-mod-off', !view.on);
    this.toggleClass('rsql-mod-tutor', view.tutor === true);
    this.toggleClass('rsql-mod-logged', view.logged === true);
    if (this._inToolbar) {
      const told = view.tutor === true || view.logged === true;
      this.setHidden(!told && (view.on || view.text === OFF_BY_SETTINGS));
    }
  }

  private readonly _inToolbar: boolean;
}

export interface PollerOptions {
  readonly fetchStatus: () => Promise<InlineStatus>;
  readonly onView: (view: StatusView) => void;
  /** each answer of the proxy, as it comes (not the redraws in between) */
  readonly onStatus?: (status: InlineStatus) => void;
  readonly enabled: () => boolean;
  readonly intervalMs?: number;
  /** while the proxy says off: ask again this often (a window an admin ends early) */
  readonly offIntervalMs?: number;
  /** after an error reply, ask again no sooner than this */
  readonly errorRefreshMs?: number;
  readonly document?: Document;
  readonly now?: () => number;
}

// asked again this long after the window's end the proxy gave (it counts the end as off)
const AFTER_END_MS = 500;

/**
 * Asks the proxy on start, every minute while the page is visible and completions are on,
 * every few seconds while they are off, at the end of the window that turned them off (the
 * proxy's `ends_in_s`: they come back then, not at the next minute), and after an error reply
 * (at most once per few seconds: typing would otherwise send one per keystroke).
 */
export class StatusPoller {
  constructor(private readonly _o: PollerOptions) {
    this._doc = _o.document ?? document;
    this._now = _o.now ?? (() => Date.now());
  }

  start(): void {
    this._started = true;
    void this.refresh();
    this._doc.addEventListener('visibilitychange', this._onVisible);
  }

  stop(): void {
    this._started = false;
    this._unschedule();
    this._doc.removeEventListener('visibilitychange', this._onVisible);
  }

  /** An error reply came: show its message now, ask the proxy again soon. */
  errorReply(message: string): void {
    this._lastError = message;
    this._render();
    const now = this._now();
    if (now - this._lastErrorRefresh >= (this._o.errorRefreshMs ?? 5000)) {
      this._lastErrorRefresh = now;
      void this.refresh();
    }
  }

  /** The user's settings changed: redraw (and ask, when they turned it on). */
  settingsChanged(): void {
    this._render();
    if (this._o.enabled()) {
      void this.refresh();
    }
  }

  async refresh(): Promise<void> {
    const asked = ++this._asked;
    try {
      const status = await this._o.fetchStatus();
      if (asked !== this._asked) {
        return; // a newer answer is on its way
      }
      this._status = status;
      this._problem = null;
      this._o.onStatus?.(status);
      if (status.on) {
        this._lastError = null;
      }
    } catch (error) {
      if (asked !== this._asked) {
        return;
      }
      this._status = null;
      this._problem = error instanceof Error ? error.message : String(error);
    }
    this._lastRefresh = this._now();
    this._render();
    this._schedule();
  }

  get view(): StatusView {
    return describeStatus({
      status: this._status,
      problem: this._problem,
      lastError: this._lastError,
      enabled: this._o.enabled()
    });
  }

  /** When the next question is due, in ms from the last answer. */
  get period(): number {
    const every = this._o.intervalMs ?? 60_000;
    const status = this._status;
    if (status?.on !== false) {
      return every; // on, or no answer (a proxy that is down is not asked faster)
    }
    const off = Math.min(every, this._o.offIntervalMs ?? 15_000);
    const ends = status.endsInS;
    return ends === undefined ? off : Math.min(off, ends * 1000 + AFTER_END_MS);
  }

  private _schedule(): void {
    this._unschedule();
    if (!this._started) {
      return;
    }
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._doc.visibilityState === 'visible') {
        void this.refresh();
      } else {
        this._schedule(); // hidden: asked when shown again (_onVisible), or at the next turn
      }
    }, this.period);
  }

  private _unschedule(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _render(): void {
    this._o.onView(this.view);
  }

  private readonly _onVisible = () => {
    const stale = this._now() - this._lastRefresh >= this.period;
    if (this._doc.visibilityState === 'visible' && stale) {
      void this.refresh();
    }
  };

  private readonly _doc: Document;
  private readonly _now: () => number;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _started = false;
  private _status: InlineStatus | null = null;
  private _problem: string | null = null;
  private _lastError: string | null = null;
  private _lastRefresh = 0;
  private _lastErrorRefresh = -Infinity;
  private _asked = 0;
}
