-- Hotline CRM schema (SQLite). Times are Unix milliseconds (INTEGER), custom fields are
-- JSON text, so rows decode identically on both backends.
CREATE TABLE customers (
    id               INTEGER PRIMARY KEY,
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
    provisional      BOOLEAN NOT NULL DEFAULT 0,
    -- Set only while provisional: the E.164 number it was created for. Unique, so two calls
    -- from the same unknown number racing each other create one record, not two.
    provisional_for  TEXT UNIQUE,
    name_key         TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX customers_name_key ON customers (name_key);

CREATE TABLE phone_numbers (
    id           INTEGER PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    e164         TEXT NOT NULL,
    kind         TEXT,
    UNIQUE (e164, customer_id)
);
CREATE INDEX phone_numbers_customer ON phone_numbers (customer_id);

CREATE TABLE interactions (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    channel         TEXT NOT NULL,
    direction       TEXT NOT NULL,
    call_id         TEXT,
    queue           TEXT,
    agent           TEXT,
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    disposition     TEXT,
    notes           TEXT,
    recording_path  TEXT
);
CREATE INDEX interactions_trail ON interactions (customer_id, started_at DESC, id DESC);
CREATE INDEX interactions_call ON interactions (call_id);

CREATE TABLE tickets (
    id           INTEGER PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    reference    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    status       TEXT NOT NULL,
    priority     TEXT NOT NULL,
    assignee     TEXT,
    due_at       INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX tickets_customer ON tickets (customer_id, status, updated_at DESC);

CREATE TABLE ticket_history (
    id         INTEGER PRIMARY KEY,
    ticket_id  INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    change     TEXT NOT NULL
);
CREATE INDEX ticket_history_ticket ON ticket_history (ticket_id, id);

CREATE TABLE interaction_tickets (
    interaction_id  INTEGER NOT NULL REFERENCES interactions (id) ON DELETE CASCADE,
    ticket_id       INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    PRIMARY KEY (interaction_id, ticket_id)
);

CREATE TABLE greeting_scripts (
    id        INTEGER PRIMARY KEY,
    queue     TEXT,
    tier      TEXT,
    template  TEXT NOT NULL
);

CREATE TABLE offers (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL,
    text               TEXT NOT NULL,
    tier               TEXT,
    segment            TEXT,
    min_interactions   INTEGER,
    max_open_tickets   INTEGER,
    last_disposition   TEXT,
    rank               INTEGER NOT NULL DEFAULT 0,
    active             BOOLEAN NOT NULL DEFAULT 1
);
