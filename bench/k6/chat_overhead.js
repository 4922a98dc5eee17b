// One open-model load run for bench/proxy_overhead.py: non-streaming chat completions
// at a constant arrival rate against one target (the simulator itself or a gateway in
// front of it). Everything comes from the environment; the summary is written as JSON
// to SUMMARY_PATH for the Python side to read.
//
//   k6 run -e TARGET_URL=http://127.0.0.1:8701/openai/v1/chat/completions -e RATE=200 \
//          -e DURATION=20s -e SUMMARY_PATH=/tmp/summary.json bench/k6/chat_overhead.js
//
// Env: TARGET_URL (required), RATE (req/s, default 200), DURATION (default 20s),
// MODEL (default gpt-4o-mini), MAX_TOKENS (default 5), HEADERS_JSON (extra request
// headers as a JSON object), TIMEOUT (per request, default 5s), PRE_VUS, MAX_VUS,
// SUMMARY_PATH (default summary.json).

import http from 'k6/http';
import { Counter } from 'k6/metrics';

const rate = parseInt(__ENV.RATE || '200', 10);
const maxVUs = parseInt(__ENV.MAX_VUS || String(rate), 10);
const preVUs = parseInt(__ENV.PRE_VUS || String(Math.min(maxVUs, Math.max(20, Math.ceil(rate / 5)))), 10);

const timeouts = new Counter('timeouts');
const badStatus = new Counter('bad_status');

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(50)', 'p(95)', 'p(99)'],
  scenarios: {
    chat: {
      executor: 'constant-arrival-rate',
      rate: rate,
      timeUnit: '1s',
      duration: __ENV.DURATION || '20s',
      preAllocatedVUs: preVUs,
      maxVUs: maxVUs,
      gracefulStop: __ENV.TIMEOUT || '5s',
    },
  },
  // An always-true threshold makes k6 keep the sub-metric of successful requests.
  thresholds: {
    'http_req_duration{expected_response:true}': ['max>=0'],
  },
};

const body = JSON.stringify({
  model: __ENV.MODEL || 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello in five words.' }],
  max_tokens: parseInt(__ENV.MAX_TOKENS || '5', 10),
  stream: false,
});

const params = {
  headers: Object.assign({ 'Content-Type': 'application/json' }, JSON.parse(__ENV.HEADERS_JSON || '{}')),
  timeout: __ENV.TIMEOUT || '5s',
};

export default function () {
  const res = http.post(__ENV.TARGET_URL, body, params);
  if (res.error_code === 1050) {
    timeouts.add(1);
  } else if (res.status !== 200) {
    badStatus.add(1);
  }
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY_PATH || 'summary.json']: JSON.stringify(data) };
}
