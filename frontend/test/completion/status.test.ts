// the status item: its words, its tooltip as text, when it asks the proxy
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { parseStatus, type InlineStatus } from '../../src/completion/client';
import { describeStatus, StatusPoller, StatusWidget } from '../../src/completion/status';

const ON: InlineStatus = { on: true, reason: null, message: '', model: 'fast' };
const WINDOW: InlineStatus = {
  on: false,
  reason: 'window',
  message: "completions are off until 14:30 (policy window 'exam')",
  model: null
};

describe('the status words', () => {
  const base = { status: ON, problem: null, lastError: null, enabled: true };

  it('says on with a check mark, off with the reason and the message as tooltip', () => {
    expect(describeStatus(base)).toEqual({
      text: 'rsql ✓',
      title: 'Inline completions are on (fast).',
      on: true
    });
    expect(describeStatus({ ...base, status: WINDOW })).toEqual({
      text: 'rsql: off (window)',
      title: WINDOW.message,
      on: false
    });
    const noModel = { ...WINDOW, reason: 'no_model' };
    expect(describeStatus({ ...base, status: noModel }).text).toBe('rsql: off (no_model)');
  });

  it('says off (settings) when turned off, unreachable when the proxy did not answer', () => {
    expect(describeStatus({ ...base, enabled: false }).text).toBe('rsql: off (settings)');
    expect(describeStatus({ ...base, status: null, problem: 'HTTP 404' })).toMatchObject({
      text: 'rsql: off (unreachable)',
      title: 'HTTP 404'
    });
  });

  it('shows a reason that is not a plain word as "off"', () => {
    const odd = { ...WINDOW, reason: '<b>now</b>' };
    expect(describeStatus({ ...base, status: odd }).text).toBe('rsql: off (off)');
  });

  it('keeps the last error in the tooltip while on', () => {
    const view = describeStatus({ ...base, lastError: 'slow down' });
    expect(view.title).toContain('Last error: slow down');
  });

  it('draws text only: markup in a message stays text', () => {
    const widget = new StatusWidget();
    const markup = '<img src=x onerror="window.pwned=1">';
    widget.display({ text: `rsql: off (${markup})`, title: markup, on: false });
    expect(widget.node.querySelector('img')).toBeNull();
    expect(widget.node.textContent).toBe(`rsql: off (${markup})`);
    expect(widget.node.title).toBe(markup);
    expect(widget.hasClass('rsql-mod-off')).toBe(true);
  });
});

describe('the status poller', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function poller(answers: (() => Promise<InlineStatus>)[], enabled = () => true) {
    let now = 0;
    const views: string[] = [];
    const statuses: boolean[] = [];
    const fetchStatus = vi.fn(() => (answers.shift() ?? (() => Promise.resolve(ON)))());
    const doc = new EventTarget() as unknown as Document & { visibilityState: string };
    (doc as { visibilityState: string }).visibilityState = 'visible';
    const p = new StatusPoller({
      fetchStatus,
      enabled,
      onView: view => views.push(view.text),
      onStatus: status => statuses.push(status.on),
      document: doc,
      now: () => now
    });
    return { p, views, statuses, fetchStatus, doc, tick: (ms: number) => (now += ms) };
  }

  it('asks on start and every minute while the page is visible', async () => {
    const { p, views, fetchStatus, doc, tick } = poller([() => Promise.resolve(WINDOW)]);
    p.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(views).toEqual(['rsql: off (window)']);
    tick(60_000);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(fetchStatus).toHaveBeenCalledTimes(2);
    expect(views.at(-1)).toBe('rsql ✓');
    (doc as { visibilityState: string }).visibilityState = 'hidden';
    tick(120_000);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(fetchStatus).toHaveBeenCalledTimes(2);
    (doc as { visibilityState: string }).visibilityState = 'visible';
    doc.dispatchEvent(new Event('visibilitychange'));
    await vi.advanceTimersByTimeAsync(0);
    expect(fetchStatus).toHaveBeenCalledTimes(3); // stale when shown again: asked at once
    p.stop();
  });

  it('asks again after an error reply, at most once per few seconds', async () => {
    const { p, fetchStatus, statuses, tick } = poller([
      () => Promise.resolve(ON),
      () => Promise.resolve({ ...ON, on: false, reason: 'budget', message: 'budget spent' })
    ]);
    p.start();
    await vi.advanceTimersByTimeAsync(0);
    tick(10_000);
    p.errorReply('budget spent for today');
    await vi.advanceTimersByTimeAsync(0);
    expect(fetchStatus).toHaveBeenCalledTimes(2);
    expect(p.view).toMatchObject({ text: 'rsql: off (budget)', title: 'budget spent' });
    // the provider hears answers only, not the redraw the error reply made
    expect(statuses).toEqual([true, false]);
    tick(1000);
    p.errorReply('budget spent for today');
    p.errorReply('budget spent for today');
    expect(fetchStatus).toHaveBeenCalledTimes(2);
    p.stop();
  });

  it('says unreachable with the failure as tooltip when the GET fails', async () => {
    const { p, views } = poller([() => Promise.reject(new Error('HTTP 404'))]);
    await p.refresh();
    expect(views).toEqual(['rsql: off (unreachable)']);
    expect(p.view.title).toBe('HTTP 404');
  });
});

describe('the status poller while completions are off', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const doc = () => {
    const d = new EventTarget() as unknown as Document & { visibilityState: string };
    (d as { visibilityState: string }).visibilityState = 'visible';
    return d;
  };

  it('asks again at the end of the window the proxy names, not at the next minute', async () => {
    const answers = [{ ...ON, on: false, reason: 'window', message: 'exam', endsInS: 5 }];
    const fetchStatus = vi.fn(() => Promise.resolve(answers.shift() ?? ON));
    const views: string[] = [];
    const p = new StatusPoller({
      fetchStatus,
      enabled: () => true,
      onView: view => views.push(view.text),
      document: doc()
    });
    p.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(views.at(-1)).toBe('rsql: off (window)');
    await vi.advanceTimersByTimeAsync(5_000);
    expect(fetchStatus).toHaveBeenCalledTimes(1); // the window still holds at its very end
    await vi.advanceTimersByTimeAsync(600);
    expect(fetchStatus).toHaveBeenCalledTimes(2);
    expect(views.at(-1)).toBe('rsql ✓');
    await vi.advanceTimersByTimeAsync(30_000);
    expect(fetchStatus).toHaveBeenCalledTimes(2); // on again: every minute
    p.stop();
  });

  it('asks every few seconds while off without an end (a window an admin may end early)', async () => {
    const off = { ...ON, on: false, reason: 'window', message: 'exam', endsInS: 3600 };
    const fetchStatus = vi.fn(() => Promise.resolve(off));
    const p = new StatusPoller({
      fetchStatus,
      enabled: () => true,
      onView: () => undefined,
      offIntervalMs: 10_000,
      document: doc()
    });
    p.start();
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(fetchStatus).toHaveBeenCalledTimes(4);
    p.stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(fetchStatus).toHaveBeenCalledTimes(4);
  });

  it('reads the window end out of the proxy answer, and nothing that is not a number', () => {
    const base = { on: false, reason: 'window', message: 'exam', model: null };
    expect(parseStatus({ ...base, ends_in_s: 12.5 }).endsInS).toBe(12.5);
    expect(parseStatus({ ...base, ends_in_s: '12' }).endsInS).toBeUndefined();
    expect(parseStatus({ ...base, ends_in_s: -1 }).endsInS).toBeUndefined();
  });

  it('in a toolbar, shows only while the proxy keeps completions off', () => {
    const item = new StatusWidget({ inToolbar: true });
    expect(item.isHidden).toBe(true);
    item.display({ text: 'rsql: off (window)', title: 'Exam in progress', on: false });
    expect(item.isHidden).toBe(false);
    expect(item.node.title).toBe('Exam in progress');
    item.display({ text: 'rsql ✓', title: 'on', on: true });
    expect(item.isHidden).toBe(true);
    item.display({ text: 'rsql: off (settings)', title: 'settings', on: false });
    expect(item.isHidden).toBe(true);
  });
});

describe('the status item in tutor mode (issue 75)', () => {
  const TUTOR = {
    window: 'stat101-weekdays',
    message: 'Hints only this week <b>please</b>',
    names: true,
    endsAtLocal: 'Fri 17:00 CET'
  };

  it('says tutor with the admin\'s message, on or off, and reads it from the proxy', () => {
    const base = { problem: null, lastError: null, enabled: true };
    const on = describeStatus({ ...base, status: { ...ON, tutor: TUTOR } });
    expect(on).toMatchObject({ text: 'rsql ✓ tutor', on: true, tutor: true });
    expect(on.title).toContain('Tutor mode (window stat101-weekdays, until Fri 17:00 CET)');
    expect(on.title).toContain('Hints only this week <b>please</b>');
    expect(on.title).toContain('completions offer names only');
    const off = describeStatus({ ...base, status: { ...WINDOW, tutor: TUTOR } });
    expect(off.text).toBe('rsql: off (window) · tutor');
    const parsed = parseStatus({
      on: true,
      model: 'fast',
      tutor: { window: 'w', message: 'm', completions: 'names', ends_at_local: null, agent: false }
    });
    expect(parsed.tutor).toEqual({ window: 'w', message: 'm', names: true, endsAtLocal: null });
    expect(parseStatus({ on: true, tutor: 'yes' }).tutor).toBeNull();
  });

  it('shows in Notebook 7\'s toolbar while tutor mode is on, completions on or not', () => {
    const item = new StatusWidget({ inToolbar: true });
    const view = describeStatus({
      status: { ...ON, tutor: TUTOR },
      problem: null,
      lastError: null,
      enabled: true
    });
    item.display(view);
    expect(item.isHidden).toBe(false);
    expect(item.hasClass('rsql-mod-tutor')).toBe(true);
    expect(item.node.querySelector('b')).toBeNull(); // the message is text
    item.display({ ...view, tutor: false, text: 'rsql ✓' });
    expect(item.isHidden).toBe(true);
  });
});

describe('the status item where a course log keeps the user\'s requests', () => {
  const LOG = {
    course: 'stat101',
    notice:
      'Your course staff can read your assistant conversations: the instructors of stat101 ' +
      '<i>read</i> what you ask'
  };
  const base = { problem: null, lastError: null, enabled: true };

  it('says logged, the notice first in its tooltip, on, off, in tutor mode or not', () => {
    const on = describeStatus({ ...base, status: { ...ON, courseLog: LOG } });
    expect(on).toMatchObject({ text: 'rsql ✓ · logged', on: true, logged: true });
    expect(on.title.split('\n')[0]).toBe(`${LOG.notice} (stat101)`);
    expect(on.title).toContain('Inline completions are on (fast).');
    const off = describeStatus({ ...base, status: { ...WINDOW, courseLog: LOG } });
    expect(off.text).toBe('rsql: off (window) · logged');
    const tutor = { window: 'w', message: 'hints', names: true, endsAtLocal: null };
    const both = describeStatus({ ...base, status: { ...ON, tutor, courseLog: LOG } });
    expect(both.text).toBe('rsql ✓ tutor · logged');
    expect(describeStatus({ ...base, status: ON }).logged).toBeUndefined();
  });

  it('reads the proxy\'s course_log, and nothing that is not one', () => {
    const parsed = parseStatus({ on: true, course_log: { course: 'stat101', notice: 'n' } });
    expect(parsed.courseLog).toEqual({ course: 'stat101', notice: 'n' });
    expect(parseStatus({ on: true, course_log: 'yes' }).courseLog).toBeNull();
    expect(parseStatus({ on: true, course_log: { course: 'x' } }).courseLog).toBeNull();
    expect(parseStatus({ on: true }).courseLog).toBeNull();
  });

  it('shows in Notebook 7\'s toolbar, its notice as text', () => {
    const item = new StatusWidget({ inToolbar: true });
    item.display(describeStatus({ ...base, status: { ...ON, courseLog: LOG } }));
    expect(item.isHidden).toBe(false);
    expect(item.hasClass('rsql-mod-logged')).toBe(true);
    expect(item.node.querySelector('i')).toBeNull();
    item.display(describeStatus({ ...base, status: ON }));
    expect(item.isHidden).toBe(true);
  });
});
