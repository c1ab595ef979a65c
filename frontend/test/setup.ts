// jsdom has no DragEvent, which @lumino/dragdrop (under @lumino/widgets) extends at import
if (typeof globalThis.DragEvent === 'undefined') {
  (globalThis as { DragEvent?: unknown }).DragEvent = class DragEvent extends MouseEvent {};
}
