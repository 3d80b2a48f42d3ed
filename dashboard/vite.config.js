// Everything, uPlot included, is bundled into dist/: ems-cloud serves it and may run offline.
import { defineConfig } from 'vite';

export default defineConfig({
  // Relative asset URLs, so the build also works behind a reverse proxy under a path prefix.
  base: './',
  build: { outDir: 'dist', emptyOutDir: true },
  // `npm run dev`: proxy the API and the live feed to a local ems-cloud.
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:8000',
      '/ws': { target: 'ws://127.0.0.1:8000', ws: true },
    },
  },
});
