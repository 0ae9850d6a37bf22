-- Hotline CRM schema (PostgreSQL). Times are Unix milliseconds (BIGINT), custom fields are
-- JSON text, so rows decode identically on both backends.
CREATE TABLE customers (
    id               BIGSERIAL PRIMARY KEY,
    title            TEXT,
    first_name       TEXT,
    surname          TEXT NOT NULL DEFAULT '',
    company          TEXT,
    language         TEXT,
    tier             TEXT NOT NULL DEFAULT 'public',
    segment          TEXT,
    account_manager  TEXT,
    notes            TEXT,
    custom_fields    TEXT NOT NULL DEFAULT '{}',
    provisional      BOOLEAN NOT NULL DEFAULT FALSE,
    -- Set only while provisional: the E.164 number it was created for. Unique, so two calls
    -- from the same unknown number racing each other create one record, not two.
    provisional_for  TEXT UNIQUE,
    name_key         TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX customers_name_key ON customers (name_key);

CREATE TABLE phone_numbers (
    id           BIGSERIAL PRIMARY KEY,
    customer_id  BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    e164         TEXT COLLATE "C" NOT NULL,
    kind         TEXT,
    UNIQUE (e164, customer_id)
);
CREATE INDEX phone_numbers_customer ON phone_numbers (customer_id);

CREATE TABLE interactions (
    id              BIGSERIAL PRIMARY KEY,
    customer_id     BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    channel         TEXT NOT NULL,
    direction       TEXT NOT NULL,
    call_id         TEXT,
    queue           TEXT,
    agent           TEXT,
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    disposition     TEXT,
    notes           TEXT,
    recording_path  TEXT
);
CREATE INDEX interactions_trail ON interactions (customer_id, started_at DESC, id DESC);
CREATE INDEX interactions_call ON interactions (call_id);

CREATE TABLE tickets (
    id           BIGSERIAL PRIMARY KEY,
    customer_id  BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    reference    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    status       TEXT NOT NULL,
    priority     TEXT NOT NULL,
    assignee     TEXT,
    due_at       BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX tickets_customer ON tickets (customer_id, status, updated_at DESC);

CREATE TABLE ticket_history (
    id         BIGSERIAL PRIMARY KEY,
    ticket_id  BIGINT NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    change     TEXT NOT NULL
);
CREATE INDEX ticket_history_ticket ON ticket_history (ticket_id, id);

CREATE TABLE interaction_tickets (
    interaction_id  BIGINT NOT NULL REFERENCES interactions (id) ON DELETE CASCADE,
    ticket_id       BIGINT NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    PRIMARY KEY (interaction_id, ticket_id)
);

CREATE TABLE greeting_scripts (
    id        BIGSERIAL PRIMARY KEY,
    queue     TEXT,
    tier      TEXT,
    template  TEXT NOT NULL
);

CREATE TABLE offers (
    id                 BIGSERIAL PRIMARY KEY,
    name               TEXT NOT NULL,
    text               TEXT NOT NULL,
    tier               TEXT,
    segment            TEXT,
    min_interactions   BIGINT,
    max_open_tickets   BIGINT,
    last_disposition   TEXT,
    rank               BIGINT NOT NULL DEFAULT 0,
    active             BOOLEAN NOT NULL DEFAULT TRUE
);
