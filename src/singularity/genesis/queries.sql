-- The SQL of Genesis, against its own database.

-- ------------------------------------------------------------------------------ executions

-- name: execution_reply --
-- The recorded answer of a job request, if it has run already.
SELECT reply::text AS reply, reply_to FROM executions WHERE request_id = %(request_id)s

-- name: execution_record --
-- Record a job and its sandbox steps in one statement (one round trip, one commit); a request
-- recorded already keeps its first answer and steps (no row returned). %(steps)s is a JSON
-- array of {step, status, exit_code, wall_ms, cpu_ms, max_rss_kb}, in the order they ran.
WITH recorded AS (
    INSERT INTO executions (
        request_id, msg_id, agent_id, language, mode, status, exit_code, wall_ms, cpu_ms,
        max_rss_kb, code_bytes, output_bytes, error_bytes, truncated, unsafe, reply_to, reply,
        received_at
    ) VALUES (
        %(request_id)s, %(msg_id)s, %(agent_id)s, %(language)s, %(mode)s, %(status)s,
        %(exit_code)s, %(wall_ms)s, %(cpu_ms)s, %(max_rss_kb)s, %(code_bytes)s,
        %(output_bytes)s, %(error_bytes)s, %(truncated)s, %(unsafe)s, %(reply_to)s, %(reply)s,
        %(received_at)s
    )
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id
), steps AS (
    INSERT INTO sandbox_history (execution_id, step, status, exit_code, wall_ms, cpu_ms,
                                 max_rss_kb, unsafe)
    SELECT recorded.request_id, s.step, s.status, s.exit_code, s.wall_ms, s.cpu_ms,
           s.max_rss_kb, %(unsafe)s
    FROM recorded,
         ROWS FROM (jsonb_to_recordset(%(steps)s)
             AS (step text, status text, exit_code integer, wall_ms real, cpu_ms real,
                 max_rss_kb integer)) WITH ORDINALITY
             AS s(step, status, exit_code, wall_ms, cpu_ms, max_rss_kb, ordinality)
    ORDER BY s.ordinality
)
SELECT true AS inserted FROM recorded

-- name: execution_history --
SELECT request_id, agent_id, language, mode, status, exit_code, wall_ms, cpu_ms, max_rss_kb,
       code_bytes, output_bytes, truncated, unsafe, received_at, completed_at
FROM executions
WHERE (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY completed_at DESC
LIMIT %(limit)s

-- name: sandbox_step_for_experiment --
INSERT INTO sandbox_history (experiment_id, step, status, exit_code, wall_ms, cpu_ms,
                             max_rss_kb, unsafe)
VALUES (%(owner)s, %(step)s, %(status)s, %(exit_code)s, %(wall_ms)s, %(cpu_ms)s,
        %(max_rss_kb)s, %(unsafe)s)

-- ----------------------------------------------------------------------------- experiments

-- name: experiment_reply --
SELECT reply::text AS reply, reply_to FROM experiments WHERE id = %(id)s AND reply IS NOT NULL

-- name: experiment_record --
-- Record an experiment; one recorded already keeps its first outcome (no row returned).
INSERT INTO experiments (
    id, agent_id, repo, diff, test_command, status, recommendation, rule, success_rate,
    regression, llm_reduction, outcome, error, reply_to, reply
) VALUES (
    %(id)s, %(agent_id)s, %(repo)s, %(diff)s, %(test_command)s, %(status)s,
    %(recommendation)s, %(rule)s, %(success_rate)s, %(regression)s, %(llm_reduction)s,
    %(outcome)s, %(error)s, %(reply_to)s, %(reply)s
)
ON CONFLICT (id) DO NOTHING
RETURNING true AS inserted

-- name: experiment_metric --
INSERT INTO experiment_metrics (experiment_id, name, value)
VALUES (%(experiment_id)s, %(name)s, %(value)s)
ON CONFLICT (experiment_id, name) DO UPDATE SET value = EXCLUDED.value

-- name: experiment_get --
SELECT id, agent_id, repo, diff, test_command, status, recommendation, rule, success_rate,
       regression, llm_reduction, outcome, error, baseline, applied_at, rolled_back_at,
       created_at, reply_to
FROM experiments WHERE id = %(id)s

-- name: experiment_list --
SELECT id, repo, status, recommendation, success_rate, regression, applied_at,
       rolled_back_at, created_at
FROM experiments
ORDER BY created_at DESC
LIMIT %(limit)s

-- name: experiment_metrics --
SELECT name, value FROM experiment_metrics WHERE experiment_id = %(id)s ORDER BY name

-- name: experiment_applied --
-- The baseline recorded as the diff is applied to the repository itself.
UPDATE experiments SET baseline = %(baseline)s, applied_at = now(), rolled_back_at = NULL
WHERE id = %(id)s

-- name: experiment_rolled_back --
UPDATE experiments SET rolled_back_at = now() WHERE id = %(id)s

-- name: rollback_record --
INSERT INTO rollback_history (experiment_id, reason, restored_files)
VALUES (%(experiment_id)s, %(reason)s, %(restored_files)s)

-- name: rollback_list --
SELECT id, reason, restored_files, created_at FROM rollback_history
WHERE experiment_id = %(id)s ORDER BY id

-- ------------------------------------------------------------------- evolution model calls

-- name: evolution_request_get --
-- The request a run made for one of its steps, with its answer once it has one.
SELECT request_id, body, context, sent_at, result, answered_at
FROM evolution_llm_requests
WHERE run_id = %(run_id)s AND step = %(step)s

-- name: evolution_request_record --
-- Record a request before it is sent; a step recorded already keeps its first (no row).
INSERT INTO evolution_llm_requests (request_id, run_id, step, body, context)
VALUES (%(request_id)s, %(run_id)s, %(step)s, %(body)s, %(context)s)
ON CONFLICT (run_id, step) DO NOTHING
RETURNING request_id

-- name: evolution_request_sent --
UPDATE evolution_llm_requests SET sent_at = now()
WHERE request_id = %(request_id)s AND sent_at IS NULL

-- name: evolution_answer_record --
-- Record an answer (the first one counts); a row comes back when the request is known.
UPDATE evolution_llm_requests
SET result = COALESCE(result, %(result)s),
    cost_usd = CASE WHEN result IS NULL THEN %(cost_usd)s ELSE cost_usd END,
    answered_at = COALESCE(answered_at, now())
WHERE request_id = %(request_id)s
RETURNING run_id, result

-- name: evolution_answer_get --
SELECT result FROM evolution_llm_requests
WHERE request_id = %(request_id)s AND answered_at IS NOT NULL

-- name: evolution_run_spend --
-- What a run's model calls have cost so far, and how many were answered.
SELECT COALESCE(sum(cost_usd), 0)::float8 AS spend_usd, count(answered_at) AS answered
FROM evolution_llm_requests WHERE run_id = %(run_id)s
