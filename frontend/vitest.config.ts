import { defineConfig } from 'vitest/config';

// the proposal's logic and DOM (src/proposal/ but the plugin): jsdom gives them a document
export default defineConfig({
  test: {
    environment: 'jsdom',
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts']
  }
});
