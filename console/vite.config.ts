import { defaultClientConditions, defineConfig } from "vite";

declare const process: { env: Record<string, string | undefined> };

// `npm run dev` proxies the API and the output links to a running gateway (make run's by default),
// so the console calls its own origin there as it does when the gateway serves it.
const gateway = process.env.GATEWAY_URL ?? "http://127.0.0.1:8080";

// The client package is used from its TypeScript source (its "source" export condition), so the
// console and the client share one copy of the generated code and nothing needs building first.
export default defineConfig({
  base: "/",
  resolve: {
    conditions: ["source", ...defaultClientConditions],
  },
  server: {
    proxy: {
      "/render.v1.RenderService": gateway,
      "/render.admin.v1.AdminService": gateway,
      "/files": gateway,
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
});
