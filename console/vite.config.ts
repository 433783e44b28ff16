import { defaultClientConditions, defineConfig } from "vite";

// The client package is used from its TypeScript source (its "source" export condition), so the
// console and the client share one copy of the generated code and nothing needs building first.
export default defineConfig({
  base: "/",
  resolve: {
    conditions: ["source", ...defaultClientConditions],
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
});
