-- The SQL of Nexus, against its own database. The design's HITL timestamps are TIMESTAMP
-- without a zone: Nexus writes them in UTC, explicitly, whatever the session's zone.

-- ------------------------------------------------------------------------ the LLM request log

-- name: llm_lookup --
-- The recorded answer of a request, and what has been spent today by everyone and by its agent.
SELECT (SELECT reply::text FROM llm_requests WHERE request_id = %(request_id)s) AS reply,
       (SELECT reply_to FROM llm_requests WHERE request_id = %(request_id)s) AS reply_to,
       COALESCE(SUM(cost_usd), 0)::float8 AS spent_today,
       COALESCE(SUM(cost_usd) FILTER (WHERE agent_id = %(agent_id)s), 0)::float8 AS agent_spent_today
FROM llm_requests
WHERE %(with_spend)s AND completed_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'

-- name: llm_record --
-- Record a routed request; a request already recorded keeps its first answer (no row returned:
-- read it with llm_reply, in a new statement that sees the other's commit). The commit does
-- not wait for its WAL flush (synchronous_commit off for this statement's transaction): the
-- answer is published afterwards in a durable commit, which on the same server flushes this
-- record too; what a crash can lose is a record whose answer never went out, and that request
-- comes back and is routed again.
INSERT INTO llm_requests (
    request_id, msg_id, agent_id, task_type, tier, tier_reason, outcome, model, attempts,
    prompt_tokens, completion_tokens, cost_usd, provider_ms, overhead_ms, reply_to, reply,
    received_at
)
SELECT %(request_id)s, %(msg_id)s, %(agent_id)s, %(task_type)s, %(tier)s, %(tier_reason)s,
       %(outcome)s, %(model)s, %(attempts)s, %(prompt_tokens)s, %(completion_tokens)s,
       %(cost_usd)s, %(provider_ms)s, %(overhead_ms)s, %(reply_to)s, %(reply)s, %(received_at)s
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
ON CONFLICT (request_id) DO NOTHING
RETURNING true AS inserted

-- name: llm_reply --
SELECT reply::text FROM llm_requests WHERE request_id = %(request_id)s

-- name: llm_history --
SELECT request_id, agent_id, task_type, tier, tier_reason, outcome, model, attempts,
       prompt_tokens, completion_tokens, cost_usd::float8 AS cost_usd, provider_ms, overhead_ms,
       received_at, completed_at
FROM llm_requests
WHERE (%(agent)s::text IS NULL OR agent_id = %(agent)s)
  AND (%(outcome)s::text IS NULL OR outcome = %(outcome)s)
ORDER BY completed_at DESC
LIMIT %(limit)s

-- name: llm_today --
SELECT count(*) AS requests,
       COALESCE(sum(prompt_tokens), 0) AS prompt_tokens,
       COALESCE(sum(completion_tokens), 0) AS completion_tokens,
       COALESCE(sum(cost_usd), 0)::float8 AS cost_usd,
       count(*) FILTER (WHERE outcome <> 'ok') AS errors
FROM llm_requests
WHERE completed_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'

-- name: llm_by_model --
SELECT COALESCE(model, '(none)') AS model, tier, count(*) AS requests,
       COALESCE(sum(prompt_tokens), 0) AS prompt_tokens,
       COALESCE(sum(completion_tokens), 0) AS completion_tokens,
       COALESCE(sum(cost_usd), 0)::float8 AS cost_usd
FROM llm_requests
WHERE completed_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY 1, 2
ORDER BY requests DESC, model

-- -------------------------------------------------------------------------------- approvals
-- A request is its design row (approval_requests) and Nexus's row (approval_state), joined.

-- name: approval_insert --
WITH request AS (
    INSERT INTO approval_requests (
        id, file_path, diff, description, agent_id, timestamp, created_at
    ) VALUES (
        %(id)s, %(file_path)s, %(diff)s, %(description)s, %(agent_id)s,
        now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
    )
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
INSERT INTO approval_state (id, request_id, reply_to, deadline)
SELECT id, %(request_id)s, %(reply_to)s, %(deadline)s FROM request
RETURNING id

-- name: approval_get --
SELECT r.*, s.request_id, s.reply_to, s.deadline, s.status, s.reason, s.decided_by,
       s.published_at
FROM approval_requests r JOIN approval_state s USING (id)
WHERE r.id = %(id)s

-- name: approval_pending --
SELECT r.*, s.request_id, s.reply_to, s.deadline, s.status, s.reason, s.decided_by,
       s.published_at
FROM approval_state s JOIN approval_requests r USING (id)
WHERE s.status = 'pending'
ORDER BY r.created_at, r.id

-- name: approval_decide --
-- Decide a pending approval; nothing happens to one already decided (returns no row). The
-- state row's lock orders concurrent decisions: the second finds it no longer pending.
WITH decided AS (
    UPDATE approval_state
    SET status = %(status)s, reason = %(reason)s, decided_by = %(user)s
    WHERE id = %(id)s AND status = 'pending'
    RETURNING *
), design AS (
    UPDATE approval_requests r
    SET approved = %(approved)s, approved_at = now() AT TIME ZONE 'UTC'
    FROM decided
    WHERE r.id = decided.id
    RETURNING r.*
)
SELECT design.*, d.request_id, d.reply_to, d.deadline, d.status, d.reason, d.decided_by,
       d.published_at
FROM design JOIN decided d USING (id)

-- name: approval_published --
UPDATE approval_state SET published_at = now() WHERE id = %(id)s

-- name: approval_unpublished --
-- Decisions whose answer has not gone out (the process that decided stopped first).
SELECT r.*, s.request_id, s.reply_to, s.deadline, s.status, s.reason, s.decided_by,
       s.published_at
FROM approval_state s JOIN approval_requests r USING (id)
WHERE s.status <> 'pending' AND s.published_at IS NULL
  AND r.approved_at < (now() AT TIME ZONE 'UTC') - make_interval(secs => %(older_than_s)s)
ORDER BY r.approved_at
LIMIT 100

-- name: approval_overdue --
SELECT id FROM approval_state
WHERE status = 'pending' AND deadline <= now()
ORDER BY deadline
LIMIT 100

-- name: approval_history --
SELECT r.*, s.request_id, s.reply_to, s.deadline, s.status, s.reason, s.decided_by,
       s.published_at
FROM approval_state s JOIN approval_requests r USING (id)
WHERE s.status <> 'pending'
  AND (%(agent)s::text IS NULL OR r.agent_id = %(agent)s)
  AND (%(outcome)s::text IS NULL OR s.status = %(outcome)s)
  AND (%(since)s::timestamp IS NULL OR r.created_at >= %(since)s)
  AND (%(until)s::timestamp IS NULL OR r.created_at < %(until)s)
ORDER BY r.approved_at DESC NULLS LAST, r.id
LIMIT %(limit)s

-- -------------------------------------------------------------------------------- questions

-- name: question_insert --
WITH request AS (
    INSERT INTO question_requests (id, question, context, agent_id, timestamp, created_at)
    VALUES (
        %(id)s, %(question)s, %(context)s, %(agent_id)s,
        now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
    )
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
INSERT INTO question_state (id, request_id, reply_to, deadline)
SELECT id, %(request_id)s, %(reply_to)s, %(deadline)s FROM request
RETURNING id

-- name: question_get --
SELECT r.*, s.request_id, s.reply_to, s.deadline, s.status, s.decided_by, s.published_at
FROM question_requests r JOIN question_state s USING (id)
WHERE r.id = %(id)s

-- name: question_pending --
SELECT r.*, s.request_id, s.reply_to, s.deadline, s.status, s.decided_by, s.published_at
FROM question_state s JOIN question_requests r USING (id)
WHERE s.status = 'pending'
ORDER BY r.created_at, r.id

-- name: question_decide --
WITH decided AS (
    UPDATE question_state
    SET status = %(status)s, decided_by = %(user)s
    WHERE id = %(id)s AND status = 'pending'
    RETURNING *
), design AS (
    UPDATE question_requests r
    SET response = %(response)s, response_at = now() AT TIME ZONE 'UTC'
    FROM decided
    WHERE r.id = decided.id
    RETURNING r.*
)
SELECT design.*, d.request_id, d.reply_to, d.deadline, d.status, d.decided_by, d.published_at
FROM design JOIN decided d USING (id)

-- name: question_published --
UPDATE question_state SET published_at = now() WHERE id = %(id)s

-- name: question_unpublished --
SELECT r.*, s.request_id, s.reply_to, s.deadline, s.status, s.decided_by, s.published_at
FROM question_state s JOIN question_requests r USING (id)
WHERE s.status <> 'pending' AND s.published_at IS NULL
  AND r.response_at < (now() AT TIME ZONE 'UTC') - make_interval(secs => %(older_than_s)s)
ORDER BY r.response_at
LIMIT 100

-- name: question_overdue --
SELECT id FROM question_state
WHERE status = 'pending' AND deadline <= now()
ORDER BY deadline
LIMIT 100

-- name: question_history --
SELECT r.*, s.request_id, s.reply_to, s.deadline, s.status, s.decided_by, s.published_at
FROM question_state s JOIN question_requests r USING (id)
WHERE s.status <> 'pending'
  AND (%(agent)s::text IS NULL OR r.agent_id = %(agent)s)
  AND (%(outcome)s::text IS NULL OR s.status = %(outcome)s)
  AND (%(since)s::timestamp IS NULL OR r.created_at >= %(since)s)
  AND (%(until)s::timestamp IS NULL OR r.created_at < %(until)s)
ORDER BY r.response_at DESC NULLS LAST, r.id
LIMIT %(limit)s

-- ---------------------------------------------------------------------------------- metrics

-- name: metric_insert --
INSERT INTO hitl_metrics (request_type, request_id, response_time_ms, user_id, created_at)
VALUES (%(request_type)s, %(request_id)s, %(response_time_ms)s, %(user_id)s,
        now() AT TIME ZONE 'UTC')

-- name: pending_counts --
SELECT (SELECT count(*) FROM approval_state WHERE status = 'pending') AS approvals,
       (SELECT count(*) FROM question_state WHERE status = 'pending') AS questions

-- name: decision_times --
-- Time to decision over the last 30 days (expiries write no metric: they are not decisions).
SELECT count(*) AS count,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms) AS p50_ms,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY response_time_ms) AS p90_ms
FROM hitl_metrics
WHERE created_at >= (now() AT TIME ZONE 'UTC') - interval '30 days'

-- ----------------------------------------------------------------------------------- fleet

-- name: fleet_event_insert --
-- One task event, kept once; with the task's row brought to its newest event (an older event
-- arriving late counts, but does not move the task back).
WITH kept AS (
    INSERT INTO fleet_task_events (instance, task_id, event_id, at, state, message)
    VALUES (%(instance)s, %(task_id)s, %(event_id)s, %(at)s, %(state)s, %(message)s)
    ON CONFLICT DO NOTHING
    RETURNING instance, task_id, event_id
)
INSERT INTO fleet_tasks AS t (instance, task_id, agent_id, description, repo, state, outcome,
                              message, last_event_id, first_at, last_at)
SELECT instance, task_id, %(agent_id)s, %(description)s, %(repo)s, %(state)s, %(outcome)s,
       %(message)s, event_id, %(at)s, %(at)s
FROM kept
ON CONFLICT (instance, task_id) DO UPDATE SET
    events = t.events + 1,
    first_at = least(t.first_at, excluded.first_at),
    agent_id = CASE WHEN excluded.last_event_id > t.last_event_id THEN excluded.agent_id ELSE t.agent_id END,
    description = CASE WHEN excluded.last_event_id > t.last_event_id THEN excluded.description ELSE t.description END,
    repo = CASE WHEN excluded.last_event_id > t.last_event_id THEN excluded.repo ELSE t.repo END,
    state = CASE WHEN excluded.last_event_id > t.last_event_id THEN excluded.state ELSE t.state END,
    outcome = CASE WHEN excluded.last_event_id > t.last_event_id THEN excluded.outcome ELSE t.outcome END,
    message = CASE WHEN excluded.last_event_id > t.last_event_id THEN excluded.message ELSE t.message END,
    last_at = greatest(t.last_at, excluded.last_at),
    last_event_id = greatest(t.last_event_id, excluded.last_event_id)
RETURNING true AS kept

-- name: fleet_tasks --
SELECT instance, task_id, agent_id, description, repo, state, outcome, message, events,
       first_at, last_at
FROM fleet_tasks ORDER BY last_at DESC LIMIT %(limit)s

-- name: fleet_task_events --
SELECT event_id, at, state, message FROM fleet_task_events
WHERE instance = %(instance)s AND task_id = %(task_id)s ORDER BY event_id
