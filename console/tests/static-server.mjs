// Serves a built console (DIST, default ../dataflows/console_assets) at /console on PORT, as the control plane
// does. With RECORDED=1 it also answers the feed (/console/events) with the recorded snapshot and /query with the
// recorded rows and /console/learner/diff with the recorded diff (fixtures/), for the accessibility audit; the Playwright tests route those themselves.
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(process.env.DIST || path.join(here, '../../dataflows/console_assets'));
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };

const fixture = (name) => readFileSync(path.join(here, 'fixtures', name), 'utf8');

function recorded(url, request, response) {
  if (url.pathname === '/console/events') {
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    response.end(`retry: 600000\nevent: snapshot\ndata: ${JSON.stringify(JSON.parse(fixture('snapshot.json')))}\n\n`);
    return true;
  }
  if (url.pathname === '/console/query') {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      const rows = JSON.parse(fixture('query.json'));
      response.writeHead(200, { 'content-type': 'application/json' });
      const sql = JSON.parse(body || '{}').sql ?? '';
      response.end(JSON.stringify(sql.includes('FROM alerts') ? rows.alerts : sql.includes('FROM promotions') ? rows.promotions : rows.learner));
    });
    return true;
  }
  if (url.pathname === '/console/learner/diff') {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(fixture('learner-diff.json'));
    return true;
  }
  return false;
}

createServer((request, response) => {
  const url = new URL(request.url ?? '/', 'http://localhost');
  if (process.env.RECORDED === '1' && recorded(url, request, response)) return;
  const asset = url.pathname.startsWith('/console/assets/') ? path.join(dist, url.pathname.slice('/console/'.length)) : null;
  const file = asset && asset.startsWith(dist) && existsSync(asset) && statSync(asset).isFile() ? asset : path.join(dist, 'index.html');
  if (!url.pathname.startsWith('/console')) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
  createReadStream(file).pipe(response);
}).listen(Number(process.env.PORT ?? 4173), '127.0.0.1');
