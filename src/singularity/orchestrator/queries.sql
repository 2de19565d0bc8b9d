-- Singularity's queries: agents, tasks, pending requests and the local LLM log.

-- name: ensure_agent --
-- An agent instance by id; its kind is fixed when it is first seen.
INSERT INTO agents (id, kind) VALUES (%(id)s, %(kind)s)
ON CONFLICT (id) DO NOTHING

-- name: list_agents --
SELECT a.id, a.kind, a.created_at,
       count(t.id) AS tasks,
       count(t.id) FILTER (WHERE t.outcome = 'applied') AS applied,
       count(t.id) FILTER (WHERE t.finished_at IS NULL) AS open,
       coalesce(c.calls, 0) AS llm_calls,
       coalesce(c.prompt_tokens, 0) + coalesce(c.completion_tokens, 0) AS tokens,
       c.cost_usd
FROM agents a
LEFT JOIN tasks t ON t.agent_id = a.id
LEFT JOIN agent_costs c ON c.agent_id = a.id
GROUP BY a.id, a.kind, a.created_at, c.calls, c.prompt_tokens, c.completion_tokens, c.cost_usd
ORDER BY a.created_at

-- name: create_task --
INSERT INTO tasks (agent_id, description, repo, test_command, data, runner, lease_until)
VALUES (%(agent_id)s, %(description)s, %(repo)s, %(test_command)s, %(data)s, %(runner)s,
        now() + make_interval(secs => %(lease_s)s))
RETURNING id

-- name: get_task --
SELECT t.id, t.agent_id, a.kind, t.description, t.repo, t.test_command, t.state, t.data,
       t.outcome, t.error, t.runner, t.lease_until, t.created_at, t.updated_at, t.finished_at
FROM tasks t JOIN agents a ON a.id = t.agent_id
WHERE t.id = %(id)s

-- name: list_tasks --
SELECT t.id, t.agent_id, a.kind, t.description, t.repo, t.state, t.outcome, t.created_at,
       t.updated_at, t.finished_at,
       count(l.task_id) AS model_calls,
       coalesce(sum(l.prompt_tokens + l.completion_tokens), 0) AS tokens,
       sum(l.cost_usd) AS cost_usd,
       count(l.task_id) FILTER (WHERE l.cost_usd IS NULL) AS calls_cost_unknown,
       extract(epoch FROM coalesce(t.finished_at, now()) - t.created_at)::float8 AS elapsed_s
FROM tasks t JOIN agents a ON a.id = t.agent_id
LEFT JOIN llm_calls l ON l.task_id = t.id
GROUP BY t.id, a.kind
ORDER BY t.id DESC
LIMIT %(limit)s

-- name: claim_task --
-- Take a task for this runner: one no one holds, or whose holder's lease ran out (it died).
UPDATE tasks SET runner = %(runner)s, lease_until = now() + make_interval(secs => %(lease_s)s)
WHERE id = %(id)s AND finished_at IS NULL
  AND (runner IS NULL OR runner = %(runner)s OR lease_until < now())
RETURNING id

-- name: claim_orphan --
-- The oldest unfinished task whose runner's lease has run out.
UPDATE tasks SET runner = %(runner)s, lease_until = now() + make_interval(secs => %(lease_s)s)
WHERE id = (
  SELECT id FROM tasks
  WHERE finished_at IS NULL AND (lease_until IS NULL OR lease_until < now())
  ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING id

-- name: renew_lease --
UPDATE tasks SET lease_until = now() + make_interval(secs => %(lease_s)s)
WHERE id = %(id)s AND runner = %(runner)s AND finished_at IS NULL
RETURNING id

-- name: release_task --
UPDATE tasks SET runner = NULL, lease_until = NULL WHERE id = %(id)s AND runner = %(runner)s

-- name: advance_task --
-- Record a finished step: the next state and what the step produced, if this runner holds it.
UPDATE tasks SET state = %(state)s, data = data || %(data)s, updated_at = now()
WHERE id = %(id)s AND runner = %(runner)s AND finished_at IS NULL
RETURNING id

-- name: finish_task --
UPDATE tasks SET state = %(state)s, outcome = %(outcome)s, error = %(error)s,
       data = data || %(data)s, updated_at = now(), finished_at = now(),
       runner = NULL, lease_until = NULL
WHERE id = %(id)s AND finished_at IS NULL
RETURNING id

-- name: add_event --
INSERT INTO task_events (task_id, state, message) VALUES (%(task_id)s, %(state)s, %(message)s)
RETURNING id

-- name: task_events --
SELECT id, at, state, message FROM task_events
WHERE task_id = %(task_id)s AND id > %(after)s ORDER BY id

-- name: record_request --
-- A request about to be sent; a step asked again (after a restart) keeps its first request.
INSERT INTO pending_requests (request_id, task_id, step, kind, queue, reply_to, body, deadline)
VALUES (%(request_id)s, %(task_id)s, %(step)s, %(kind)s, %(queue)s, %(reply_to)s, %(body)s,
        %(deadline)s)
ON CONFLICT (task_id, step) DO NOTHING
RETURNING request_id

-- name: step_request --
SELECT request_id, queue, body, sent_at, answered_at, result FROM pending_requests
WHERE task_id = %(task_id)s AND step = %(step)s

-- name: mark_sent --
UPDATE pending_requests SET sent_at = now() WHERE request_id = %(request_id)s

-- name: record_answer --
-- The first answer counts; a duplicate delivery changes nothing.
UPDATE pending_requests SET result = %(result)s, answered_at = now()
WHERE request_id = %(request_id)s AND answered_at IS NULL
RETURNING kind, task_id, created_at, body

-- name: request_answer --
SELECT answered_at, result FROM pending_requests WHERE request_id = %(request_id)s

-- name: request_known --
SELECT 1 FROM pending_requests WHERE request_id = %(request_id)s

-- name: record_llm_call --
INSERT INTO llm_calls (request_id, agent_id, task_id, task_type, model, tier, prompt_tokens,
                       completion_tokens, cost_usd, error, requested_at)
VALUES (%(request_id)s, %(agent_id)s, %(task_id)s, %(task_type)s, %(model)s, %(tier)s,
        %(prompt_tokens)s, %(completion_tokens)s, %(cost_usd)s, %(error)s, %(requested_at)s)
ON CONFLICT (request_id) DO NOTHING

-- name: task_cost --
SELECT count(*) AS calls, coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
       coalesce(sum(completion_tokens), 0) AS completion_tokens, sum(cost_usd) AS cost_usd
FROM llm_calls WHERE task_id = %(task_id)s

-- ------------------------------------------------------------------------------ trajectory

-- name: trajectory_record --
-- One step of a task's agent loop; a step recorded already keeps its first record.
INSERT INTO task_trajectory (task_id, key, kind, name, input, output, ok, tokens, cost_usd,
                             wall_ms)
VALUES (%(task_id)s, %(key)s, %(kind)s, %(name)s, %(input)s, %(output)s, %(ok)s, %(tokens)s,
        %(cost_usd)s, %(wall_ms)s)
ON CONFLICT (task_id, key) DO NOTHING

-- name: trajectory_step --
SELECT output, ok FROM task_trajectory WHERE task_id = %(task_id)s AND key = %(key)s

-- name: trajectory --
SELECT key, kind, name, input, output, ok, tokens, cost_usd::float8 AS cost_usd, wall_ms, at
FROM task_trajectory WHERE task_id = %(task_id)s ORDER BY id

-- --------------------------------------------------------------------- task events outbox

-- name: unsent_events --
-- The oldest events not sent on the bus yet, with their task's fields. SKIP LOCKED: two
-- relays of one instance (two processes) take different events.
SELECT e.id, e.task_id, e.at, e.state, e.message, t.agent_id, t.description, t.repo,
       t.outcome
FROM task_events e JOIN tasks t ON t.id = e.task_id
WHERE e.sent_at IS NULL
ORDER BY e.id
LIMIT %(limit)s
FOR UPDATE OF e SKIP LOCKED

-- name: mark_events_sent --
UPDATE task_events SET sent_at = now() WHERE id = ANY(%(ids)s::bigint[])
