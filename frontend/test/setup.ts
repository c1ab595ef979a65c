import { vi } from 'vitest';

// jsdom has no DragEvent, which @lumino/dragdrop (under @lumino/widgets) extends at import
if (typeof globalThis.DragEvent === 'undefined') {
  (globalThis as { DragEvent?: unknown }).DragEvent = class DragEvent extends MouseEvent {};
}

// run before each test file: the files share one document (vitest.config.ts), so each starts
// with an empty one, real timers and no spies another file left
document.body.replaceChildren();
vi.useRealTimers();
vi.restoreAllMocks();
