// The perf gate (`just perf-run`, cli/perf_run.py): POST /v1/route/execute at a constant arrival
// rate, tasks in turn, against a stack on the simulator, with the gate's thresholds. k6 exits 99
// when a threshold is crossed; the summary is written as JSON to SUMMARY_PATH.
//
//   k6 run -e URL=http://127.0.0.1:8700/v1/route/execute -e API_KEY=sk-sym-... -e RATE=50 \
//          -e DURATION=30s -e P95_MS=250 -e P99_MS=500 -e ERROR_RATE=0.01 \
//          -e SUMMARY_PATH=runs/gates/perf-summary.json tests/k6/route_execute.js

import http from 'k6/http';

const rate = parseInt(__ENV.RATE || '50', 10);
const maxVUs = parseInt(__ENV.MAX_VUS || String(Math.max(10, rate * 2)), 10);

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(50)', 'p(95)', 'p(99)'],
  scenarios: {
    route_execute: {
      executor: 'constant-arrival-rate',
      rate: rate,
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: Math.min(maxVUs, Math.max(5, Math.ceil(rate / 5))),
      maxVUs: maxVUs,
      gracefulStop: '10s',
    },
  },
  thresholds: {
    'http_req_duration{expected_response:true}': [
      `p(95)<${__ENV.P95_MS || '250'}`,
      `p(99)<${__ENV.P99_MS || '500'}`,
    ],
    http_req_failed: [`rate<${__ENV.ERROR_RATE || '0.01'}`],
  },
};

const TASKS = ['chat', 'code', 'summarize', 'extract', 'reasoning'];
const params = {
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${__ENV.API_KEY}` },
  timeout: __ENV.TIMEOUT || '10s',
};

export default function () {
  const body = JSON.stringify({
    task: TASKS[__ITER % TASKS.length],
    messages: [{ role: 'user', content: 'Answer in five words: what is a routing proxy?' }],
    max_tokens: 16,
  });
  http.post(__ENV.URL, body, params);
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY_PATH || 'perf-summary.json']: JSON.stringify(data, null, 2) };
}
