// One Vite multi-page build: each page is an HTML entry; dist/ is what the hub serves
// (carehub/http/pages.py). Hashed assets go to dist/assets/ (cached for a year), HTML is never cached.
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

const here = (path) => fileURLToPath(new URL(path, import.meta.url))

// Vant's icon font is inline (a data: woff2) with a CDN woff as its fallback; nothing may come from
// a CDN at run time (and the CSP allows fonts from 'self' and data: only), so the fallback goes.
const noCdnFonts = {
  name: 'carehub-no-cdn-fonts',
  enforce: 'pre',
  transform(code, id) {
    if (!/[\\/]vant[\\/].*\.css$/.test(id)) return null
    return { code: code.replace(/,\s*url\(["']?(?:https?:)?\/\/[^)]*\)\s*format\(["']?woff["']?\)/g, ''), map: null }
  },
}

// `npm run dev`: Vite's dev server in front of a running hub (./scripts/serve) for /api and /ws
const hub = process.env.CAREHUB_URL ?? 'http://127.0.0.1:8080'

export default defineConfig({
  base: '/',
  server: {
    proxy: {
      '/api': hub,
      '/ws': { target: hub.replace(/^http/, 'ws'), ws: true },
    },
  },
  plugins: [noCdnFonts, vue()],
  resolve: { alias: { '@shared': here('./shared') } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    // no inline data: scripts or styles (the CSP allows only 'self'); small images stay inline as data:
    assetsInlineLimit: 4096,
    modulePreload: { polyfill: false },
    // the admin console carries ECharts (about 500 kB before gzip); the patient pages stay far below
    chunkSizeWarningLimit: 600,
    rolldownOptions: {
      input: {
        h5: here('./h5/index.html'),
        doctor: here('./doctor/index.html'),
        admin: here('./admin/index.html'),
        display: here('./display/index.html'),
      },
    },
  },
})
