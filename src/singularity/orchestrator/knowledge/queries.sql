-- The SQL of Singularity's knowledge artifacts (table knowledge_artifacts, migration 0001).
-- A query that names `embedding` runs only where the column exists (pgvector installed).

-- name: vector_column --
SELECT EXISTS (
  SELECT 1 FROM information_schema.columns
  WHERE table_schema = current_schema() AND table_name = 'knowledge_artifacts'
    AND column_name = 'embedding'
) AS present

-- name: lexeme_count --
-- Zero when the query holds no searchable word (only stop words, or punctuation).
SELECT numnode(websearch_to_tsquery('english', %(query)s)) AS lexemes

-- name: artifact_states --
-- What is stored for these keys, to tell a new, a changed and an unchanged artifact apart.
SELECT a.artifact_type, a.artifact_id, a.version, a.content_raw, a.content, a.embedding_model
FROM knowledge_artifacts a
JOIN unnest(%(types)s::text[], %(ids)s::text[], %(versions)s::text[]) AS k (t, i, v)
  ON a.artifact_type = k.t AND a.artifact_id = k.i AND a.version = k.v

-- name: artifact_upsert --
-- Without pgvector. Returns no row when nothing changed; `created` tells an insert.
INSERT INTO knowledge_artifacts AS a (artifact_type, artifact_id, version, content_raw, content)
VALUES (%(artifact_type)s, %(artifact_id)s, %(version)s, %(content_raw)s, %(content)s)
ON CONFLICT (artifact_type, artifact_id, version) DO UPDATE
SET content_raw = EXCLUDED.content_raw, content = EXCLUDED.content, updated_at = now()
WHERE a.content_raw IS DISTINCT FROM EXCLUDED.content_raw
   OR a.content IS DISTINCT FROM EXCLUDED.content
RETURNING a.id, (a.xmax = 0) AS created

-- name: artifact_upsert_embedded --
-- With pgvector. The vector is of content_raw: a new one replaces it, a changed content_raw
-- without a new one drops it (a stale vector would rank the artifact by its old text).
INSERT INTO knowledge_artifacts AS a (
  artifact_type, artifact_id, version, content_raw, content,
  embedding, embedding_model, embedding_dimensions
)
VALUES (
  %(artifact_type)s, %(artifact_id)s, %(version)s, %(content_raw)s, %(content)s,
  %(embedding)s::vector, %(embedding_model)s, %(embedding_dimensions)s
)
ON CONFLICT (artifact_type, artifact_id, version) DO UPDATE
SET content_raw = EXCLUDED.content_raw,
    content = EXCLUDED.content,
    embedding = CASE WHEN EXCLUDED.embedding IS NOT NULL THEN EXCLUDED.embedding
                     WHEN a.content_raw = EXCLUDED.content_raw THEN a.embedding END,
    embedding_model = CASE WHEN EXCLUDED.embedding IS NOT NULL THEN EXCLUDED.embedding_model
                           WHEN a.content_raw = EXCLUDED.content_raw THEN a.embedding_model END,
    embedding_dimensions = CASE
      WHEN EXCLUDED.embedding IS NOT NULL THEN EXCLUDED.embedding_dimensions
      WHEN a.content_raw = EXCLUDED.content_raw THEN a.embedding_dimensions END,
    updated_at = CASE
      WHEN a.content_raw IS DISTINCT FROM EXCLUDED.content_raw
        OR a.content IS DISTINCT FROM EXCLUDED.content THEN now()
      ELSE a.updated_at END
WHERE a.content_raw IS DISTINCT FROM EXCLUDED.content_raw
   OR a.content IS DISTINCT FROM EXCLUDED.content
   OR (EXCLUDED.embedding IS NOT NULL
       AND a.embedding_model IS DISTINCT FROM EXCLUDED.embedding_model)
RETURNING a.id, (a.xmax = 0) AS created

-- name: usage_record --
-- Each id once per call, however often it is listed.
UPDATE knowledge_artifacts
SET usage_count = usage_count + 1,
    success_count = success_count + CASE WHEN %(success)s THEN 1 ELSE 0 END,
    last_used_at = now()
WHERE id = ANY(%(ids)s::bigint[])

-- name: artifact_list --
SELECT id, artifact_type, artifact_id, version, content, content_raw, usage_count,
       success_count, embedding_model, created_at, updated_at, last_used_at
FROM knowledge_artifacts
WHERE %(artifact_type)s::text IS NULL OR artifact_type = %(artifact_type)s
ORDER BY artifact_type, artifact_id, version
LIMIT %(limit)s

-- name: artifact_find --
SELECT id, artifact_type, artifact_id, version, content, content_raw, usage_count,
       success_count, embedding_model, created_at, updated_at, last_used_at
FROM knowledge_artifacts
WHERE artifact_type = %(artifact_type)s AND artifact_id = %(artifact_id)s
  AND (%(version)s::text IS NULL OR version = %(version)s)
ORDER BY created_at, version

-- name: artifact_delete --
DELETE FROM knowledge_artifacts
WHERE artifact_type = %(artifact_type)s AND artifact_id = %(artifact_id)s
  AND (%(version)s::text IS NULL OR version = %(version)s)

-- name: artifact_by_ids --
SELECT id, artifact_type, artifact_id, version, content, content_raw, usage_count,
       success_count, embedding_model, created_at, updated_at, last_used_at
FROM knowledge_artifacts
WHERE id = ANY(%(ids)s::bigint[])
ORDER BY id

-- name: export_candidates --
-- Unused artifacts have a success rate of 0 here: they pass only a threshold of 0.
SELECT id, artifact_type, artifact_id, version, content, content_raw, usage_count,
       success_count, embedding_model, created_at, updated_at, last_used_at
FROM knowledge_artifacts
WHERE usage_count >= %(min_usage)s
  AND CASE WHEN usage_count = 0 THEN 0 ELSE success_count::float8 / usage_count END
      >= %(min_success_rate)s
  AND (%(artifact_type)s::text IS NULL OR artifact_type = %(artifact_type)s)
ORDER BY artifact_type, artifact_id, version

-- name: search_text --
-- Full-text alone. Equal ranks go to the artifact that has worked best (Laplace-smoothed
-- success rate, so that an unused artifact counts as 1/2).
SELECT a.id, a.artifact_type, a.artifact_id, a.version, a.content, a.content_raw,
       a.usage_count, a.success_count,
       ts_rank_cd(a.search_vector, q.tsq, 32)::float8 AS score,
       ts_rank_cd(a.search_vector, q.tsq, 32)::float8 AS text_rank,
       NULL::float8 AS similarity
FROM knowledge_artifacts a, websearch_to_tsquery('english', %(query)s) AS q (tsq)
WHERE a.search_vector @@ q.tsq
  AND (%(artifact_type)s::text IS NULL OR a.artifact_type = %(artifact_type)s)
ORDER BY score DESC, (a.success_count + 1)::float8 / (a.usage_count + 2) DESC, a.id
LIMIT %(limit)s

-- name: search_substring --
-- For a query without a searchable word: the text as a substring (%(pattern)s is escaped).
SELECT a.id, a.artifact_type, a.artifact_id, a.version, a.content, a.content_raw,
       a.usage_count, a.success_count,
       CASE WHEN a.artifact_id ILIKE %(pattern)s OR a.artifact_type ILIKE %(pattern)s
            THEN 1.0 ELSE 0.5 END::float8 AS score,
       NULL::float8 AS text_rank,
       NULL::float8 AS similarity
FROM knowledge_artifacts a
WHERE (a.artifact_id ILIKE %(pattern)s OR a.artifact_type ILIKE %(pattern)s
       OR a.content_raw ILIKE %(pattern)s)
  AND (%(artifact_type)s::text IS NULL OR a.artifact_type = %(artifact_type)s)
ORDER BY score DESC, (a.success_count + 1)::float8 / (a.usage_count + 2) DESC, a.id
LIMIT %(limit)s

-- name: search_hybrid --
-- Reciprocal-rank fusion: each artifact scores 1/(k + its place) in the full-text ranking
-- plus 1/(k + its place) among the nearest vectors (cosine, pgvector's <=>), counting only
-- vectors of the query's model and dimensions that are at least min_similarity close.
-- Equal scores go to the closer vector, then the better text rank, then the success rate.
WITH q AS MATERIALIZED (
  SELECT websearch_to_tsquery('english', %(query)s) AS tsq, %(embedding)s::vector AS vec
),
text_hits AS (
  SELECT a.id, ts_rank_cd(a.search_vector, q.tsq, 32)::float8 AS text_rank
  FROM knowledge_artifacts a, q
  WHERE %(use_text)s AND a.search_vector @@ q.tsq
    AND (%(artifact_type)s::text IS NULL OR a.artifact_type = %(artifact_type)s)
  ORDER BY text_rank DESC, a.id
  LIMIT %(candidates)s
),
text_ranked AS (
  SELECT id, text_rank, row_number() OVER (ORDER BY text_rank DESC, id) AS place
  FROM text_hits
),
distances AS (
  -- The CASE keeps <=> away from vectors of other dimensions, which it refuses.
  SELECT a.id,
         CASE WHEN a.embedding_dimensions = %(dimensions)s
              THEN (a.embedding <=> q.vec)::float8 END AS distance
  FROM knowledge_artifacts a, q
  WHERE a.embedding_model = %(model)s
    AND (%(artifact_type)s::text IS NULL OR a.artifact_type = %(artifact_type)s)
),
vector_hits AS (
  SELECT id, 1 - distance AS similarity
  FROM distances
  WHERE distance IS NOT NULL AND 1 - distance >= %(min_similarity)s
  ORDER BY distance, id
  LIMIT %(candidates)s
),
vector_ranked AS (
  SELECT id, similarity, row_number() OVER (ORDER BY similarity DESC, id) AS place
  FROM vector_hits
),
fused AS (
  SELECT coalesce(t.id, v.id) AS id, t.text_rank, v.similarity,
         (coalesce(1.0 / (%(k)s + t.place), 0) + coalesce(1.0 / (%(k)s + v.place), 0))::float8
           AS score
  FROM text_ranked t FULL JOIN vector_ranked v ON v.id = t.id
)
SELECT a.id, a.artifact_type, a.artifact_id, a.version, a.content, a.content_raw,
       a.usage_count, a.success_count, f.score, f.text_rank, f.similarity
FROM fused f JOIN knowledge_artifacts a ON a.id = f.id
ORDER BY f.score DESC, f.similarity DESC NULLS LAST, f.text_rank DESC NULLS LAST,
         (a.success_count + 1)::float8 / (a.usage_count + 2) DESC, a.id
LIMIT %(limit)s
