"""The workspace schema, versioned. Add a migration to MIGRATIONS; never edit a shipped one."""

from __future__ import annotations

import duckdb

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE IF NOT EXISTS samples (
    id VARCHAR PRIMARY KEY,               -- content hash of (system, history, instruction, input, output)
    instruction VARCHAR NOT NULL,
    input VARCHAR NOT NULL DEFAULT '',
    output VARCHAR NOT NULL,
    system VARCHAR NOT NULL DEFAULT '',
    history VARCHAR NOT NULL DEFAULT '[]',  -- JSON list of [user, assistant] turns before the last
    origin VARCHAR NOT NULL DEFAULT 'seed',  -- seed | simplified | improved | augmented | edited
    parent_id VARCHAR,                     -- the sample this one was refined from
    axis VARCHAR,                          -- complexity | diversity | quality, for refined samples
    proposal_id VARCHAR,
    created_in_iteration INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP DEFAULT current_timestamp
);

-- which samples form dataset version D(i); split 'train' or 'heldout'
CREATE TABLE IF NOT EXISTS dataset_members (
    iteration INTEGER NOT NULL,
    sample_id VARCHAR NOT NULL,
    split VARCHAR NOT NULL DEFAULT 'train',
    PRIMARY KEY (iteration, sample_id)
);

CREATE TABLE IF NOT EXISTS iterations (
    number INTEGER PRIMARY KEY,
    status VARCHAR NOT NULL,               -- see store/iterations.STATUSES
    m_complexity DOUBLE,
    m_diversity DOUBLE,
    m_quality DOUBLE,
    k INTEGER,
    base_model VARCHAR,
    model VARCHAR,                         -- checkpoint trained on D(number)
    counts VARCHAR NOT NULL DEFAULT '{}',  -- JSON: flagged per axis, proposals, accepted, sizes
    created_at TIMESTAMP DEFAULT current_timestamp,
    updated_at TIMESTAMP DEFAULT current_timestamp
);

-- per-sample signals of D(iteration), diagnosed with the model trained on D(iteration)
CREATE TABLE IF NOT EXISTS signals (
    iteration INTEGER NOT NULL,
    sample_id VARCHAR NOT NULL,
    loss_pre DOUBLE,
    loss_post DOUBLE,
    diversity DOUBLE,
    neighbours VARCHAR,                    -- JSON list of neighbour sample ids, nearest first
    neighbour_sims VARCHAR,                -- JSON list of cosine similarities
    instruction_clarity DOUBLE,
    instruction_completeness DOUBLE,
    instruction_factuality DOUBLE,
    response_clarity DOUBLE,
    response_completeness DOUBLE,
    response_factuality DOUBLE,
    quality DOUBLE,
    truncated BOOLEAN DEFAULT false,
    empty_response BOOLEAN DEFAULT false,
    PRIMARY KEY (iteration, sample_id)
);

-- cache of model-computed values: a new model, template or parameter set never reuses a stale value
CREATE TABLE IF NOT EXISTS signal_cache (
    signal VARCHAR NOT NULL,               -- loss | embedding_pass | judge ...
    cache_key VARCHAR NOT NULL,            -- hash of (model fingerprint, template hash, parameters)
    sample_id VARCHAR NOT NULL,
    payload VARCHAR NOT NULL,              -- JSON
    PRIMARY KEY (signal, cache_key, sample_id)
);

CREATE TABLE IF NOT EXISTS projections (
    iteration INTEGER NOT NULL,
    sample_id VARCHAR NOT NULL,
    method VARCHAR NOT NULL,               -- umap | tsne
    x DOUBLE NOT NULL,
    y DOUBLE NOT NULL,
    PRIMARY KEY (iteration, sample_id, method)
);

CREATE TABLE IF NOT EXISTS proposals (
    id VARCHAR PRIMARY KEY,                -- hash of (iteration, axis, source, request)
    iteration INTEGER NOT NULL,
    axis VARCHAR NOT NULL,                 -- complexity | quality | diversity
    source_id VARCHAR NOT NULL,
    neighbour_ids VARCHAR NOT NULL DEFAULT '[]',
    template_hash VARCHAR,
    model VARCHAR,
    params VARCHAR NOT NULL DEFAULT '{}',
    raw_text VARCHAR,                      -- the LLM's raw rewrite answer
    raw_response VARCHAR,                  -- the LLM's raw answer to the response call
    instruction VARCHAR,
    input VARCHAR,
    output VARCHAR,
    status VARCHAR NOT NULL,               -- pending | accepted | edited | rejected | failed
    reason VARCHAR,                        -- why it failed
    usage VARCHAR NOT NULL DEFAULT '{}',
    reviewer_note VARCHAR,
    decided_by VARCHAR,
    decided_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS review_log (
    proposal_id VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,                -- a person, or policy:<name>
    note VARCHAR,
    decided_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS runs (
    id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,                 -- diagnose | refine | train | evaluate | loop ...
    iteration INTEGER,
    status VARCHAR NOT NULL,               -- queued | running | done | failed | cancelled
    args VARCHAR NOT NULL DEFAULT '{}',
    pid INTEGER,
    error VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp,
    finished_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS metrics (
    iteration INTEGER NOT NULL,
    benchmark VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    n INTEGER,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (iteration, benchmark, metric)
);
"""

# v2: a curator's edit is kept beside the LLM's proposal, which stays as it was written.
SCHEMA_V2 = """
ALTER TABLE proposals ADD COLUMN edited_instruction VARCHAR;
ALTER TABLE proposals ADD COLUMN edited_input VARCHAR;
ALTER TABLE proposals ADD COLUMN edited_output VARCHAR;
"""

# v3: the columns of signals other than the built-in three, one number per row.
SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS signal_values (
    iteration INTEGER NOT NULL,
    sample_id VARCHAR NOT NULL,
    signal VARCHAR NOT NULL,               -- the registered signal that wrote it
    name VARCHAR NOT NULL,                 -- its column
    value DOUBLE,
    PRIMARY KEY (iteration, sample_id, name)
);
"""

# v4: canaries (synthetic defects scored beside each diagnosis, never samples) and their values;
# curators' verdicts on flagged samples, an append-only log (the latest per sample and axis holds).
SCHEMA_V4 = """
CREATE TABLE IF NOT EXISTS canaries (
    iteration INTEGER NOT NULL,
    id VARCHAR NOT NULL,                   -- content hash of its text, like a sample id
    kind VARCHAR NOT NULL,                 -- middo_core.canaries.KINDS
    axis VARCHAR NOT NULL,                 -- the axis that should flag it
    source_id VARCHAR NOT NULL,            -- the clean sample it was made from
    seed INTEGER NOT NULL,
    instruction VARCHAR NOT NULL,
    input VARCHAR NOT NULL DEFAULT '',
    output VARCHAR NOT NULL,
    PRIMARY KEY (iteration, id)
);

CREATE TABLE IF NOT EXISTS canary_values (
    iteration INTEGER NOT NULL,
    canary_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,                 -- a signal column (loss_post, diversity, quality, ...)
    value DOUBLE,
    PRIMARY KEY (iteration, canary_id, name)
);

CREATE TABLE IF NOT EXISTS verdicts (
    iteration INTEGER NOT NULL,            -- the iteration whose selection flagged the sample
    sample_id VARCHAR NOT NULL,
    axis VARCHAR NOT NULL,
    verdict VARCHAR NOT NULL,              -- real | false_alarm | cleared (withdrawn)
    actor VARCHAR NOT NULL,
    note VARCHAR,
    decided_at TIMESTAMP DEFAULT current_timestamp
);
"""

# v5: write stamps (store/db.stamp_write) for the signals and maps written before they existed, so
# the Studio's caches of a store made by an older version also outlive writes that leave them alone.
SCHEMA_V5 = """
INSERT OR REPLACE INTO meta
    SELECT 'written:signals:' || iteration, 'before-v5' FROM (SELECT DISTINCT iteration FROM signals);
INSERT OR REPLACE INTO meta
    SELECT 'written:projection:' || iteration || ':' || method, 'before-v5'
    FROM (SELECT DISTINCT iteration, method FROM projections);
"""

# v6: who saved a selection, built a version or started a run (decisions and verdicts carry their
# actor in review_log and verdicts): a signed-in identity, or the name typed at the machine.
SCHEMA_V6 = """
CREATE TABLE IF NOT EXISTS audit_log (
    actor VARCHAR NOT NULL,
    action VARCHAR NOT NULL,               -- select | build | run:<kind> | cancel:<kind>
    iteration INTEGER,
    detail VARCHAR,                        -- a run id, a version's size, the m's saved
    recorded_at TIMESTAMP DEFAULT current_timestamp
);
"""

# v7: review overlap. Each curator's standing decision on a proposal, one row per curator (a new
# decision replaces that curator's last; review_log keeps them all). proposals.status holds the
# outcome (middo_core/overlap.py). A store's earlier decisions become their deciders' rows.
SCHEMA_V7 = """
CREATE TABLE IF NOT EXISTS curator_decisions (
    proposal_id VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,                -- a person, or policy:<name>
    decision VARCHAR NOT NULL,             -- accepted | edited | rejected
    edited_instruction VARCHAR,
    edited_input VARCHAR,
    edited_output VARCHAR,
    note VARCHAR,
    decided_at TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO curator_decisions
    SELECT id, coalesce(decided_by, 'unknown'), status, edited_instruction, edited_input,
           edited_output, reviewer_note, coalesce(decided_at, created_at)
    FROM proposals WHERE status IN ('accepted', 'edited', 'rejected')
      AND id NOT IN (SELECT proposal_id FROM curator_decisions);
"""

# Each entry upgrades the schema by one version. Index i moves version i to i + 1.
MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6,
                         SCHEMA_V7]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(RuntimeError):
    pass


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
    ).fetchall()[0][0]
    if not has_meta:
        return 0
    rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    return int(rows[0][0]) if rows else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the store to SCHEMA_VERSION, each step in its own transaction; returns the version."""
    version = current_version(con)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"store schema v{version} is newer than this Middo Studio (v{SCHEMA_VERSION}): upgrade middo-studio"
        )
    while version < SCHEMA_VERSION:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(MIGRATIONS[version])
            version += 1
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(version)]
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return version
