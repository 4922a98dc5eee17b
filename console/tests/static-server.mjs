// Serves a built console (DIST, default ../dataflows/console_assets) at /console on PORT, as the control plane
// does: the visual tests feed it a recorded snapshot, so they run without a stack.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(process.env.DIST || path.join(here, '../../dataflows/console_assets'));
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

createServer((request, response) => {
  const url = new URL(request.url ?? '/', 'http://localhost');
  const asset = url.pathname.startsWith('/console/assets/') ? path.join(dist, url.pathname.slice('/console/'.length)) : null;
  const file = asset && asset.startsWith(dist) && existsSync(asset) && statSync(asset).isFile() ? asset : path.join(dist, 'index.html');
  if (!url.pathname.startsWith('/console')) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
  createReadStream(file).pipe(response);
}).listen(Number(process.env.PORT ?? 4173), '127.0.0.1');
