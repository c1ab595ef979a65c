import { describe, expect, it } from 'vitest';

import {
  DecisionOnce,
  MIME_TYPE,
  newCodeCell,
  readProposal,
  recordedDecision
} from '../src/proposal/model';
import { newMark } from '../src/provenance/mark';

describe('what goes into the new cell', () => {
  it('is exactly the proposed code, as a code cell that has never run', () => {
    const code = 'df.groupby("region")["revenue"].sum()\n  # trailing space kept  \n';
    const provenance = { kind: 'agent', model: 'fake-small', request_id: 'req-1' };
    const bundle = { code, language: 'python', title: 'Proposed cell 1', provenance };
    const proposal = readProposal(bundle);
    expect(proposal).not.toBeNull();
    const time = '2026-11-23T10:00:00.000Z';
    expect(newCodeCell(proposal!, time)).toEqual({
      cell_type: 'code',
      source: code,
      // marked as the agent's (issue 75): its model and request, every line the assistant's
      metadata: { rsql: { provenance: newMark(proposal!.origin, code, time) } },
      execution_count: null,
      outputs: []
    });
    expect(proposal!.origin).toEqual({ kind: 'agent', model: 'fake-small', requestId: 'req-1' });
  });

  it("is the agent's even when the bundle claims another kind or names none", () => {
    const liar = readProposal({ code: 'x = 1', provenance: { kind: 'inline', request_id: '<b>' } });
    expect(liar!.origin).toEqual({ kind: 'agent', model: null, requestId: null });
    const older = readProposal({ code: 'x = 1', language: 'python', title: 't' });
    expect(newCodeCell(older!).metadata.rsql.provenance).toMatchObject({
      kind: 'agent',
      request_id: null,
      lines: 1,
      assistant_lines: 1
    });
  });

  it('keeps the %%R line the kernel put on top of an R cell, and adds none itself', () => {
    const withMagic = readProposal({ code: '%%R\nsummary(cars)', language: 'r', title: 't' })!;
    expect(newCodeCell(withMagic).source).toBe('%%R\nsummary(cars)');
    // rpy2 not loaded in the kernel: the kernel sent no %%R, and none is invented here
    const bare = readProposal({ code: 'summary(cars)', language: 'r', title: 't' })!;
    expect(newCodeCell(bare).source).toBe('summary(cars)');
  });

  it('refuses data that is not a proposal', () => {
    for (const data of [null, 'x = 1', [], {}, { code: 3 }, { code: '   ' }]) {
      expect(readProposal(data)).toBeNull();
    }
  });

  it('reads an unknown language as python and a missing title as a plain one', () => {
    const p = readProposal({ code: 'x = 1', language: '<b>js</b>' })!;
    expect(p.language).toBe('python');
    expect(p.title).toBe('Proposed cell');
  });
});

describe('one decision per proposal', () => {
  it('takes the first decision and refuses every later one', () => {
    const once = new DecisionOnce();
    let inserted = 0;
    expect(once.decide('accepted', () => ++inserted > 0)).toBe(true);
    expect(once.decide('accepted', () => ++inserted > 0)).toBe(false);
    expect(once.decide('rejected')).toBe(false);
    expect(inserted).toBe(1);
    expect(once.decided).toBe('accepted');
  });

  it('after a Reject, Accept inserts nothing', () => {
    const once = new DecisionOnce();
    let inserted = 0;
    expect(once.decide('rejected')).toBe(true);
    expect(once.decide('accepted', () => ++inserted > 0)).toBe(false);
    expect(inserted).toBe(0);
  });

  it('an Accept with nowhere to insert is no decision', () => {
    const once = new DecisionOnce();
    expect(once.decide('accepted', () => false)).toBe(false);
    expect(once.decided).toBeNull();
    expect(once.decide('rejected')).toBe(true);
  });

  it('a decision recorded in the output metadata holds after a reload', () => {
    const recorded = recordedDecision({ [MIME_TYPE]: { decision: 'accepted' } });
    expect(recorded).toBe('accepted');
    expect(new DecisionOnce(recorded).decide('accepted', () => true)).toBe(false);
    expect(recordedDecision({ [MIME_TYPE]: { decision: 'run it' } })).toBeNull();
    expect(recordedDecision(undefined)).toBeNull();
  });
});
