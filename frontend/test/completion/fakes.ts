// fakes shared by the completion tests (no tests here: vitest runs *.test.ts only)
import type { ContextKernel } from '../../src/completion/kernelContext';

export const CONTEXT = {
  frames: [{ name: 'sales', kind: 'pandas.DataFrame', columns: ['region', 'revenue'] }]
};

export function okReply(value: unknown = CONTEXT) {
  return {
    content: {
      status: 'ok',
      user_expressions: {
        rsql: { status: 'ok', data: { 'application/json': value }, metadata: {} }
      }
    }
  };
}

/** A kernel that answers each execute request when the test says (or at once). */
export function fakeKernel(
  options: { status?: string; language?: string; answer?: 'now' | 'later' } = {}
) {
  const requests: unknown[] = [];
  const pending: ((reply: unknown) => void)[] = [];
  const kernel = {
    status: options.status ?? 'idle',
    info: Promise.resolve({ language_info: { name: options.language ?? 'python' } }),
    requestExecute(content: unknown) {
      requests.push(content);
      const done = new Promise<{ content: unknown }>(resolve => {
        if ((options.answer ?? 'now') === 'now') {
          resolve(okReply() as { content: unknown });
        } else {
          pending.push(reply => resolve(reply as { content: unknown }));
        }
      });
      return { done };
    }
  };
  return { kernel: kernel as ContextKernel & { status: string }, requests, pending };
}
