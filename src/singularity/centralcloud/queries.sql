-- The SQL of CentralCloud. Values are parameters; {identifiers} are quoted by Queries.compose().
--
-- Archive queries run on the shared_queue database as the read-only centralcloud_analytics role.
-- A request's key is its request_id, else the design's id, else pgmq's msg_id (as Delivery.
-- request_id has it); a result names that key in its request_id. A request sent twice under one
-- key counts once, with its first result: handlers are idempotent on the key, so it had one effect.
-- {results} is a UNION ALL of result_rows over the results queue's archive and every Singularity
-- instance's (<queue>_<instance>); its rows are (key, enqueued_at, message).

-- ------------------------------------------------------------------------ archives: analytics

-- name: readable_archives --
-- The archive tables of these queues, and of their instance queues (<queue>_<digits>), that this
-- role may read. pg_class needs no grant, so an instance queue created later is found next time.
SELECT c.relname AS archive
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'pgmq'
  AND c.relkind IN ('r', 'p')
  AND c.relname ~ ('^a_(' || array_to_string(%(queues)s::text[], '|') || ')(_[0-9]+)?$')
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY c.relname

-- name: report_window --
-- The window of one report, fixed once so that its sections agree.
SELECT now() - make_interval(days => %(days)s) AS since, now() AS until

-- name: result_rows --
-- One results archive as (key, enqueued_at, message); archived_at is indexed, and a result is
-- archived after its request was sent.
SELECT message->>'request_id' AS key, enqueued_at, message
FROM pgmq.{archive}
WHERE archived_at >= %(since)s AND message->>'request_id' IS NOT NULL

-- name: no_result_rows --
-- Stands for {results} when no results archive is readable.
SELECT NULL::text AS key, NULL::timestamptz AS enqueued_at, NULL::jsonb AS message WHERE false

-- name: llm_report --
-- LLM requests sent in the window with their first result, in three grouping sets told apart by
-- grouping_set: 4 = (task_type, tier, model), 1 = (day, task_type), 3 = (day).
WITH requests AS (
    SELECT DISTINCT ON (key) key, enqueued_at, message->>'task_type' AS task_type
    FROM (
        SELECT COALESCE(message->>'request_id', message->>'id', msg_id::text) AS key,
               enqueued_at, message, msg_id
        FROM pgmq.{requests}
        WHERE archived_at >= %(since)s AND enqueued_at >= %(since)s AND enqueued_at < %(until)s
    ) r
    ORDER BY key, enqueued_at, msg_id
),
results AS (
    SELECT DISTINCT ON (key) key, message
    FROM ({results}) s
    ORDER BY key, enqueued_at
),
joined AS (
    SELECT (q.enqueued_at AT TIME ZONE 'UTC')::date AS day,
           COALESCE(q.task_type, '-') AS task_type,
           COALESCE(s.message->>'tier', '-') AS tier,
           COALESCE(s.message->>'model', '-') AS model,
           s.key IS NOT NULL AS answered,
           COALESCE(jsonb_typeof(s.message->'error') = 'object', false) AS failed,
           CASE WHEN jsonb_typeof(s.message->'usage'->'prompt_tokens') = 'number'
                THEN (s.message->'usage'->>'prompt_tokens')::numeric END AS prompt_tokens,
           CASE WHEN jsonb_typeof(s.message->'usage'->'completion_tokens') = 'number'
                THEN (s.message->'usage'->>'completion_tokens')::numeric END AS completion_tokens,
           CASE WHEN jsonb_typeof(s.message->'cost_usd') = 'number'
                THEN (s.message->>'cost_usd')::numeric END AS cost_usd
    FROM requests q
    LEFT JOIN results s USING (key)
)
SELECT GROUPING(day, task_type, tier) AS grouping_set,
       day, task_type, tier, model,
       count(*) AS requests,
       count(*) FILTER (WHERE answered) AS answered,
       count(*) FILTER (WHERE failed) AS errors,
       count(*) FILTER (WHERE failed)::float8
           / NULLIF(count(*) FILTER (WHERE answered), 0) AS error_rate,
       COALESCE(sum(prompt_tokens), 0)::bigint AS prompt_tokens,
       COALESCE(sum(completion_tokens), 0)::bigint AS completion_tokens,
       COALESCE(sum(cost_usd), 0)::float8 AS cost_usd,
       count(*) FILTER (WHERE answered AND NOT failed AND cost_usd IS NULL) AS cost_unknown
FROM joined
GROUP BY GROUPING SETS ((task_type, tier, model), (day, task_type), (day))
ORDER BY grouping_set DESC, day, requests DESC, task_type, tier, model

-- name: approvals_report --
-- Approval requests sent in the window, per agent, with their first decision; the time to a
-- decision is from the request's enqueueing to the response's.
WITH requests AS (
    SELECT DISTINCT ON (key) key, enqueued_at, message->>'agent_id' AS agent_id
    FROM (
        SELECT COALESCE(message->>'request_id', message->>'id', msg_id::text) AS key,
               enqueued_at, message, msg_id
        FROM pgmq.{requests}
        WHERE archived_at >= %(since)s AND enqueued_at >= %(since)s AND enqueued_at < %(until)s
    ) r
    ORDER BY key, enqueued_at, msg_id
),
responses AS (
    SELECT DISTINCT ON (key) key, enqueued_at, message
    FROM ({results}) s
    ORDER BY key, enqueued_at
),
joined AS (
    SELECT COALESCE(q.agent_id, '-') AS agent_id,
           s.key IS NOT NULL AS decided,
           COALESCE(s.message->'approved' = 'true'::jsonb, false) AS approved,
           extract(epoch FROM s.enqueued_at - q.enqueued_at)::float8 AS seconds
    FROM requests q
    LEFT JOIN responses s USING (key)
)
SELECT agent_id,
       count(*) AS requests,
       count(*) FILTER (WHERE decided) AS decided,
       count(*) FILTER (WHERE approved) AS approved,
       count(*) FILTER (WHERE approved)::float8
           / NULLIF(count(*) FILTER (WHERE decided), 0) AS approval_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90_s
FROM joined
GROUP BY agent_id
ORDER BY requests DESC, agent_id

-- name: jobs_report --
-- Job requests sent in the window, per language (usual short names folded into one, from the
-- aliases/canonical arrays), with their first result; a result without a status succeeded
-- when it carries no error.
WITH requests AS (
    SELECT DISTINCT ON (key) key, enqueued_at, lower(message->>'language') AS language
    FROM (
        SELECT COALESCE(message->>'request_id', message->>'id', msg_id::text) AS key,
               enqueued_at, message, msg_id
        FROM pgmq.{requests}
        WHERE archived_at >= %(since)s AND enqueued_at >= %(since)s AND enqueued_at < %(until)s
    ) r
    ORDER BY key, enqueued_at, msg_id
),
results AS (
    SELECT DISTINCT ON (key) key, message
    FROM ({results}) s
    ORDER BY key, enqueued_at
),
joined AS (
    SELECT COALESCE(a.canonical, q.language, '-') AS language,
           s.key IS NOT NULL AS completed,
           COALESCE(
               s.message->>'status',
               CASE WHEN COALESCE(s.message->>'error', '') = '' THEN 'OK' ELSE 'ERROR' END
           ) = 'OK' AS succeeded,
           CASE WHEN jsonb_typeof(s.message->'wall_ms') = 'number'
                THEN (s.message->>'wall_ms')::float8 END AS wall_ms
    FROM requests q
    LEFT JOIN results s USING (key)
    LEFT JOIN unnest(%(aliases)s::text[], %(canonical)s::text[]) AS a(alias, canonical)
        ON a.alias = q.language
)
SELECT language,
       count(*) AS runs,
       count(*) FILTER (WHERE completed) AS completed,
       count(*) FILTER (WHERE completed AND succeeded) AS succeeded,
       count(*) FILTER (WHERE completed AND succeeded)::float8
           / NULLIF(count(*) FILTER (WHERE completed), 0) AS success_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wall_ms) AS p50_wall_ms,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY wall_ms) AS p90_wall_ms
FROM joined
GROUP BY language
ORDER BY runs DESC, language

-- ------------------------------------------------------------------------- archives: learning

-- name: archive_first --
-- The oldest messages of an archive, for a learning cursor that has read none yet. Messages
-- archived in the last settle_s seconds wait: an archiving transaction may still be open with
-- an earlier archived_at (its start), and the cursor must not pass it.
SELECT msg_id, archived_at, enqueued_at, message
FROM pgmq.{archive}
WHERE archived_at <= now() - make_interval(secs => %(settle_s)s)
ORDER BY archived_at, msg_id
LIMIT %(limit)s

-- name: archive_after --
-- The next messages of an archive after a learning cursor's (archived_at, msg_id).
SELECT msg_id, archived_at, enqueued_at, message
FROM pgmq.{archive}
WHERE archived_at >= %(archived_at)s
  AND (archived_at, msg_id) > (%(archived_at)s, %(msg_id)s)
  AND archived_at <= now() - make_interval(secs => %(settle_s)s)
ORDER BY archived_at, msg_id
LIMIT %(limit)s

-- ------------------------------------------------------------------ centralcloud: learning

-- name: cursor_ensure --
INSERT INTO learning_cursors (archive) VALUES (%(archive)s) ON CONFLICT (archive) DO NOTHING

-- name: cursor_lock --
-- Held until the batch's transaction ends: a second learner waits, then reads the moved cursor.
SELECT archived_at, msg_id FROM learning_cursors WHERE archive = %(archive)s FOR UPDATE

-- name: cursor_advance --
UPDATE learning_cursors
SET archived_at = %(archived_at)s, msg_id = %(msg_id)s, messages = messages + %(messages)s,
    updated_at = now()
WHERE archive = %(archive)s

-- name: outcomes_proposed --
-- Proposed changes (approval requests); a row that holds only a decision (its response was
-- learned first) gets its proposal, a proposal learned already stays as it was.
INSERT INTO change_outcomes (request_key, agent_id, task_type, model, llm_request_id,
                             tests_passed, success_rate, recommendation, proposed_at)
SELECT request_key, agent_id, task_type, model, llm_request_id, tests_passed, success_rate,
       recommendation, proposed_at
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    request_key text, agent_id text, task_type text, model text, llm_request_id text,
    tests_passed boolean, success_rate float8, recommendation text, proposed_at timestamptz
)
ON CONFLICT (request_key) DO UPDATE
SET agent_id = EXCLUDED.agent_id, task_type = EXCLUDED.task_type, model = EXCLUDED.model,
    llm_request_id = EXCLUDED.llm_request_id, tests_passed = EXCLUDED.tests_passed,
    success_rate = EXCLUDED.success_rate, recommendation = EXCLUDED.recommendation,
    proposed_at = EXCLUDED.proposed_at, learned_at = now()
WHERE change_outcomes.proposed_at IS NULL

-- name: outcomes_decided --
-- Decisions (approval responses); the first decision of a change is the one kept.
INSERT INTO change_outcomes (request_key, approved, decided_at)
SELECT request_key, approved, decided_at
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    request_key text, approved boolean, decided_at timestamptz
)
ON CONFLICT (request_key) DO UPDATE
SET approved = EXCLUDED.approved, decided_at = EXCLUDED.decided_at, learned_at = now()
WHERE change_outcomes.decided_at IS NULL

-- name: libraries_seen --
INSERT INTO library_usage (language, library, jobs, first_seen_at, last_seen_at)
SELECT language, library, jobs, first_seen_at, last_seen_at
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    language text, library text, jobs bigint, first_seen_at timestamptz, last_seen_at timestamptz
)
ON CONFLICT (language, library) DO UPDATE
SET jobs = library_usage.jobs + EXCLUDED.jobs,
    first_seen_at = LEAST(library_usage.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST(library_usage.last_seen_at, EXCLUDED.last_seen_at)

-- name: model_patterns --
-- Per task type and model: the changes its answers produced, and how they fared. The rate is
-- the share of decided changes that were approved with passing tests.
SELECT task_type, model,
       count(*) AS proposals,
       count(*) FILTER (WHERE decided_at IS NOT NULL) AS decided,
       count(*) FILTER (WHERE approved) AS approved,
       count(*) FILTER (WHERE tests_passed) AS tests_passed,
       count(*) FILTER (WHERE approved AND tests_passed) AS approved_and_passing,
       count(*) FILTER (WHERE approved AND tests_passed)::float8
           / NULLIF(count(*) FILTER (WHERE decided_at IS NOT NULL), 0) AS rate
FROM change_outcomes
WHERE task_type IS NOT NULL AND model IS NOT NULL AND proposed_at IS NOT NULL
GROUP BY task_type, model
ORDER BY task_type, rate DESC NULLS LAST, proposals DESC, model

-- name: library_patterns --
-- The most used libraries of each language, at most `limit` per language.
SELECT language, library, jobs, first_seen_at, last_seen_at
FROM (
    SELECT *, row_number() OVER (PARTITION BY language ORDER BY jobs DESC, library) AS rank
    FROM library_usage
) ranked
WHERE rank <= %(limit)s
ORDER BY language, jobs DESC, library

-- ------------------------------------------------------------------ centralcloud: snapshots

-- name: snapshot_insert --
INSERT INTO analytics_snapshots (since_days, report)
VALUES (%(since_days)s, %(report)s::jsonb)
RETURNING id

-- name: snapshot_get --
SELECT id, computed_at, since_days, report FROM analytics_snapshots WHERE id = %(id)s
