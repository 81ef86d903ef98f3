// Builds the console into services/ingest/console_assets/, which ships inside the wheel.
// `npm ci && npm run build` after any change under console/ (tests/unit/test_console_assets.py
// fails when the committed build does not match the sources).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/",
  build: {
    outDir: "../services/ingest/console_assets",
    emptyOutDir: true,
    assetsDir: "assets",
    // Nothing inlined as data: URIs or inline scripts: the CSP allows 'self' only.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2022",
  },
});
