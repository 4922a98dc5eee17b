-- Analyst views, version 2: the learner's evaluations. Applied by ClickHouse migration 6
-- (sinks/clickhouse_schema.py). Never edit this file once released (see 001).

-- The latest evaluation of each 24h window, group and estimator for each challenger: the
-- estimate, its 95% interval, the champion's on-policy value and the uplift's lower bound.
CREATE OR REPLACE VIEW v_learner_windows AS
SELECT
    challenger_version,
    window_start,
    group,
    estimator,
    latest.1 AS champion_version,
    latest.2 AS value,
    latest.3 AS low,
    latest.4 AS high,
    latest.5 AS samples,
    latest.6 AS effective_samples,
    latest.7 AS champion,
    latest.2 / nullIf(latest.7, 0) - 1 AS uplift,
    latest.8 AS uplift_low,
    latest.9 AS slo_breached,
    evaluated_at
FROM (
    SELECT
        challenger_version,
        window_start,
        group,
        estimator,
        argMax(
            (champion_version, value, low, high, samples, effective_samples, champion, uplift_low, slo_breached),
            as_of
        ) AS latest,
        max(as_of) AS evaluated_at
    FROM learner_metrics FINAL
    GROUP BY challenger_version, window_start, group, estimator
);
