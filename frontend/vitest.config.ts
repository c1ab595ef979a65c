import { defineConfig } from 'vitest/config';

// the proposal's logic and DOM (src/proposal/ but the plugin): jsdom gives them a document.
// One jsdom per worker, not per file (`isolate: false`): a fresh one for each of the 15 files
// was 10 of the run's 11 seconds, its tests 0.3. test/setup.ts gives every file an empty
// document and real timers, the state files share; the files pass in any order
// (`--sequence.shuffle`).
export default defineConfig({
  test: {
    environment: 'jsdom',
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    isolate: false
  }
});
