// what the kernel tells the notebook of the cells it has the assistant write
import { Signal } from '@lumino/signaling';
import { describe, expect, it } from 'vitest';

import { markOf } from '../../src/provenance/cells';
import {
  CommLike,
  COMM_TARGET,
  KernelCells,
  KernelLike,
  PAYLOAD_SOURCE,
  readPayload
} from '../../src/provenance/kernel';
import { fakeCell, fakeNotebook } from './fakes';

const PROVENANCE = { kind: 'ask', model: 'fake-small', request_id: 'abc123' };
const NOW = () => '2026-11-23T10:00:00.000Z';

function reply(payload: unknown[]) {
  return {
    msg: { header: { msg_type: 'execute_reply' }, content: { status: 'ok', payload } },
    direction: 'recv'
  };
}

/** A kernel connection: its message signal, and the comm targets registered on it. */
function fakeKernel() {
  const owner = {};
  const anyMessage = new Signal<unknown, ReturnType<typeof reply>>(owner);
  const targets = new Map<string, (comm: CommLike, msg: unknown) => void>();
  const kernel = {
    anyMessage,
    registerCommTarget: (name: string, cb: (comm: CommLike, msg: unknown) => void) =>
      targets.set(name, cb)
  } as unknown as KernelLike;
  return { kernel, anyMessage, targets };
}

function fakeComm() {
  const sent: Record<string, unknown>[] = [];
  const comm: CommLike = { send: data => sent.push(data), onMsg: () => undefined };
  return { comm, sent };
}

describe('a cell set_next_input inserted', () => {
  it('is marked when it holds exactly the text of our payload, after its cell ran', () => {
    const asking = fakeCell('%%ask --insert\nhow?', 'ask');
    const nb = fakeNotebook([asking]);
    const cells = new KernelCells({ model: nb, activeCellIndex: 0 }, NOW);
    const { kernel, anyMessage } = fakeKernel();
    cells.watch(kernel);
    const code = 'df.groupby("region").sum()';
    anyMessage.emit(
      reply([
        { source: 'set_next_input', text: code, replace: false },
        { source: PAYLOAD_SOURCE, text: code, provenance: PROVENANCE }
      ])
    );
    nb.list.splice(1, 0, fakeCell(code, 'inserted')); // what JupyterLab's handlePayload does
    expect(cells.executed(asking)).toBe(true);
    expect(markOf(nb.list[1])).toMatchObject({
      kind: 'ask',
      model: 'fake-small',
      request_id: 'abc123',
      time: NOW(),
      lines: 1,
      assistant_lines: 1
    });
  });

  it('is not marked when the cell below holds other text, nor by a payload of no kind of ours', () => {
    const asking = fakeCell('%%ask --insert\nhow?', 'ask');
    const nb = fakeNotebook([asking, fakeCell('my own code', 'mine')]);
    const cells = new KernelCells({ model: nb, activeCellIndex: 0 }, NOW);
    const { kernel, anyMessage } = fakeKernel();
    cells.watch(kernel);
    anyMessage.emit(reply([{ source: PAYLOAD_SOURCE, text: 'x = 1', provenance: PROVENANCE }]));
    expect(cells.executed(asking)).toBe(false);
    expect(markOf(nb.list[1])).toBeNull();
    const payload = (text: unknown, provenance: unknown) => ({
      payload: [{ source: PAYLOAD_SOURCE, text, provenance }]
    });
    expect(readPayload(payload('x', { kind: 'exec' }))).toBeNull();
    expect(readPayload(payload(3, PROVENANCE))).toBeNull();
    expect(readPayload({ payload: 'nope' })).toBeNull();
  });
});

describe('a cell the kernel asks for from a click', () => {
  it('answers ready, inserts below the named cell, marked, and says so', () => {
    const chat = fakeCell('%ask_chat', 'chat-cell');
    const nb = fakeNotebook([fakeCell('first', 'a'), chat, fakeCell('last', 'z')]);
    const cells = new KernelCells({ model: nb, activeCellIndex: 0 }, NOW);
    const { kernel, targets } = fakeKernel();
    cells.watch(kernel);
    const { comm, sent } = fakeComm();
    targets.get(COMM_TARGET)!(comm, {});
    expect(sent).toEqual([{ ready: true }]);
    void comm.onMsg({
      content: {
        data: {
          id: 7,
          insert: {
            code: 'x = 1\r\ny = 2',
            below: 'chat-cell',
            provenance: { ...PROVENANCE, kind: 'chat' }
          }
        }
      }
    });
    expect(sent[1]).toEqual({ id: 7, inserted: true });
    const sources = nb.list.map(c => c.sharedModel.getSource());
    expect(sources).toEqual(['first', '%ask_chat', 'x = 1\ny = 2', 'last']);
    expect(markOf(nb.list[2])).toMatchObject({ kind: 'chat', lines: 2, assistant_lines: 2 });
    expect(nb.list[2].metadata.trusted).toBe(false);
  });

  it('inserts below the active cell when the named one is gone, hidden characters as escapes', () => {
    const nb = fakeNotebook([fakeCell('a', 'a'), fakeCell('b', 'b')]);
    const cells = new KernelCells({ model: nb, activeCellIndex: 0 }, NOW);
    const trojan = 'ok = "user\u202e \u2066# admins\u2069"';
    const ask = { insert: { code: trojan, below: 'gone', provenance: { kind: 'chat' } } };
    expect(cells.insert(ask)).toEqual({ inserted: true });
    expect(nb.list[1].sharedModel.getSource()).toBe('ok = "user\\u202e \\u2066# admins\\u2069"');
  });

  it('refuses what is not a cell of ours', () => {
    const nb = fakeNotebook([fakeCell('a', 'a')]);
    const cells = new KernelCells({ model: nb, activeCellIndex: 0 }, NOW);
    for (const data of [
      null,
      { insert: { code: '', provenance: PROVENANCE } },
      { insert: { code: 'x', provenance: { kind: 'run' } } },
      { insert: { code: 'x'.repeat(300_000), provenance: PROVENANCE } }
    ]) {
      expect(cells.insert(data).inserted).toBe(false);
    }
    expect(nb.list).toHaveLength(1);
  });
});
