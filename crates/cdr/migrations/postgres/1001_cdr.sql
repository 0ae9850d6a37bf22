-- Hotline CDRs and queue log (PostgreSQL). Versions start at 1001 so these migrations share a
-- database (and its _sqlx_migrations table) with the CRM store's 0001.. migrations.
-- Times are Unix milliseconds. A row with result NULL is a call still in progress (or one
-- that was in progress when Hotline stopped: mark_interrupted settles those at startup).
CREATE TABLE calls (
    call_id      TEXT PRIMARY KEY NOT NULL,
    sip_call_id  TEXT NOT NULL,
    direction    TEXT NOT NULL DEFAULT 'inbound',
    caller       TEXT NOT NULL,
    caller_name  TEXT,
    dialed       TEXT NOT NULL,
    route        TEXT NOT NULL DEFAULT '',
    queue        TEXT,
    agent        TEXT,
    arrived_at   BIGINT NOT NULL,
    queued_at    BIGINT,
    offered_at   BIGINT,
    answered_at  BIGINT,
    ended_at     BIGINT,
    wait_ms      BIGINT NOT NULL DEFAULT 0,
    talk_ms      BIGINT NOT NULL DEFAULT 0,
    hold_ms      BIGINT NOT NULL DEFAULT 0,
    result       TEXT,
    hangup_side  TEXT,
    sip_status   BIGINT NOT NULL DEFAULT 0,
    recording    TEXT,
    transfers    BIGINT NOT NULL DEFAULT 0
);
-- Reports read a time window, optionally per queue or agent.
CREATE INDEX calls_arrived ON calls (arrived_at);
CREATE INDEX calls_queue_arrived ON calls (queue, arrived_at);
CREATE INDEX calls_agent_arrived ON calls (agent, arrived_at);
-- Startup finds the calls left in progress without a scan.
CREATE INDEX calls_in_progress ON calls (arrived_at) WHERE result IS NULL;

CREATE TABLE queue_log (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    call_id  TEXT NOT NULL,
    queue    TEXT NOT NULL,
    agent    TEXT,
    event    TEXT NOT NULL,
    data     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX queue_log_at ON queue_log (at);
CREATE INDEX queue_log_agent_at ON queue_log (agent, at);
CREATE INDEX queue_log_call ON queue_log (call_id);
