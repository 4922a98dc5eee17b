-- Analyst views, version 1: applied by ClickHouse migration 4 (sinks/clickhouse_schema.py).
-- Never edit this file once released: change a view with CREATE OR REPLACE VIEW in a new
-- numbered file and a new migration. Every view reads its tables with FINAL, so an event the
-- stream delivered twice counts once. Statements end with a semicolon at the end of a line.

-- Usage per hour, app, provider and model: attempts, errors, tokens, cost, latency percentiles.
-- An error is any attempt that did not end 'ok' (a client that hung up, 'cancelled', is none).
-- Latency and time-to-first-byte percentiles are over successful attempts.
CREATE OR REPLACE VIEW v_usage_hourly AS
SELECT
    toStartOfHour(ts) AS hour,
    app,
    provider,
    model,
    count() AS attempts,
    uniqExact(decision_id) AS requests,
    countIf(status = 'ok') AS ok,
    countIf(status NOT IN ('ok', 'cancelled')) AS errors,
    errors / attempts AS error_rate,
    countIf(status = '429') AS rate_limited,
    countIf(status = 'timeout') AS timeouts,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd,
    quantileIf(0.5)(latency_ms, status = 'ok') AS latency_p50_ms,
    quantileIf(0.95)(latency_ms, status = 'ok') AS latency_p95_ms,
    quantileIf(0.99)(latency_ms, status = 'ok') AS latency_p99_ms,
    quantileIf(0.5)(ttfb_ms, status = 'ok') AS ttfb_p50_ms,
    quantileIf(0.95)(ttfb_ms, status = 'ok') AS ttfb_p95_ms,
    quantileIf(0.99)(ttfb_ms, status = 'ok') AS ttfb_p99_ms
FROM usage FINAL
GROUP BY hour, app, provider, model;

-- Latency percentiles and error rate per hour, provider and model, over every app.
CREATE OR REPLACE VIEW v_latency_hourly AS
SELECT
    toStartOfHour(ts) AS hour,
    provider,
    model,
    count() AS attempts,
    countIf(status NOT IN ('ok', 'cancelled')) / count() AS error_rate,
    quantileIf(0.5)(latency_ms, status = 'ok') AS latency_p50_ms,
    quantileIf(0.95)(latency_ms, status = 'ok') AS latency_p95_ms,
    quantileIf(0.99)(latency_ms, status = 'ok') AS latency_p99_ms
FROM usage FINAL
GROUP BY hour, provider, model;

-- Cost per day, app, provider and model.
CREATE OR REPLACE VIEW v_cost_daily AS
SELECT
    toDate(ts) AS day,
    app,
    provider,
    model,
    uniqExact(decision_id) AS requests,
    count() AS attempts,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd,
    cost_usd / requests AS cost_per_request_usd
FROM usage FINAL
GROUP BY day, app, provider, model;

-- Champion / challenger / override mix per hour and app: decisions and share of the hour's decisions.
CREATE OR REPLACE VIEW v_policy_share_hourly AS
SELECT
    hour,
    app,
    policy,
    decisions,
    decisions / sum(decisions) OVER (PARTITION BY hour, app) AS share
FROM
(
    SELECT toStartOfHour(ts) AS hour, app, policy, count() AS decisions
    FROM decisions FINAL
    GROUP BY hour, app, policy
);

-- Decisions per hour, app, task, policy and chosen arm, with the logged propensities
-- (the serving probability of the chosen arm) that off-policy estimates weight by.
CREATE OR REPLACE VIEW v_policy_mix_hourly AS
SELECT
    toStartOfHour(ts) AS hour,
    app,
    task,
    policy,
    policy_version,
    provider,
    model,
    count() AS decisions,
    avg(propensity) AS mean_propensity,
    min(propensity) AS min_propensity,
    max(propensity) AS max_propensity,
    sumIf(1 / propensity, propensity > 0) AS inverse_propensity_sum
FROM decisions FINAL
GROUP BY hour, app, task, policy, policy_version, provider, model;

-- Fallbacks seen from the decisions: how often the chosen arm was given up on, and who served.
CREATE OR REPLACE VIEW v_decision_fallbacks_hourly AS
SELECT
    toStartOfHour(ts) AS hour,
    app,
    concat(provider, '/', model) AS chosen,
    served_by,
    count() AS decisions,
    countIf(length(fallbacks) > 0) AS with_fallback,
    with_fallback / decisions AS fallback_rate,
    sum(length(fallbacks)) AS arms_given_up,
    countIf(length(fallbacks) > 0 AND served_by = '') AS unserved
FROM decisions FINAL
GROUP BY hour, app, chosen, served_by;

-- Fallback attempts seen from usage: attempts after the first, where they fell back from, how they ended.
CREATE OR REPLACE VIEW v_fallbacks_hourly AS
SELECT
    toStartOfHour(ts) AS hour,
    app,
    fallback_from,
    concat(provider, '/', model) AS arm,
    attempt,
    status,
    count() AS attempts,
    sum(cost_usd) AS cost_usd
FROM usage FINAL
WHERE attempt > 1 OR fallback_from != ''
GROUP BY hour, app, fallback_from, arm, attempt, status;

-- Feedback scores per hour of the decision, app, policy and arm.
CREATE OR REPLACE VIEW v_feedback_hourly AS
SELECT
    toStartOfHour(d.ts) AS hour,
    d.app AS app,
    d.policy AS policy,
    d.provider AS provider,
    d.model AS model,
    count() AS feedback,
    avg(f.score) AS mean_score
FROM feedback AS f FINAL
INNER JOIN decisions AS d FINAL ON f.decision_id = d.decision_id
GROUP BY hour, app, policy, provider, model;
