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
  options: {
    status?: string;
    language?: string;
    answer?: 'now' | 'later';
    infoAfterMs?: number;
  } = {}
) {
  const requests: unknown[] = [];
  const pending: ((reply: unknown) => void)[] = [];
  const languageInfo = { language_info: { name: options.language ?? 'python' } };
  const kernel = {
    status: options.status ?? 'idle',
    // a kernel whose kernel_info comes late (a kernel just started) when infoAfterMs is set,
    // counted from when the provider asks
    get info() {
      return options.infoAfterMs === undefined
        ? Promise.resolve(languageInfo)
        : new Promise(resolve => setTimeout(() => resolve(languageInfo), options.infoAfterMs));
    },
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
