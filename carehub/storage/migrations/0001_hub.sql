-- The hub: actor state, event log, scheduled messages (reminders and outbox tells),
-- per-account delivery streams with device cursors.
-- Portable SQL only (PostgreSQL, openGauss, KingbaseES): no extensions, no jsonb operators.

CREATE TABLE actor_state (
    address     varchar(200) PRIMARY KEY,
    kind        varchar(64)  NOT NULL,
    state       text         NOT NULL,
    version     bigint       NOT NULL,
    updated_at  timestamptz  NOT NULL
);
CREATE INDEX actor_state_kind ON actor_state (kind);

CREATE TABLE actor_events (
    id          bigserial    PRIMARY KEY,
    address     varchar(200) NOT NULL,
    version     bigint       NOT NULL,
    type        varchar(100) NOT NULL,
    body        text         NOT NULL,
    created_at  timestamptz  NOT NULL
);
CREATE INDEX actor_events_address ON actor_events (address, id);

CREATE TABLE scheduled_messages (
    id            varchar(40)  PRIMARY KEY,
    target        varchar(200) NOT NULL,
    type          varchar(100) NOT NULL,
    body          text         NOT NULL,
    due_at        timestamptz  NOT NULL,
    reminder_key  varchar(100),
    created_at    timestamptz  NOT NULL,
    attempts      integer      NOT NULL DEFAULT 0
);
CREATE INDEX scheduled_messages_due ON scheduled_messages (due_at);
CREATE UNIQUE INDEX scheduled_messages_key ON scheduled_messages (target, reminder_key);

CREATE TABLE accounts (
    id             varchar(64)  PRIMARY KEY,
    login          varchar(100) NOT NULL UNIQUE,
    display_name   varchar(100) NOT NULL,
    roles          varchar(200) NOT NULL,
    password_hash  varchar(200),
    disabled       boolean      NOT NULL DEFAULT false,
    created_at     timestamptz  NOT NULL
);

CREATE TABLE auth_sessions (
    token_hash   char(64)     PRIMARY KEY,
    account_id   varchar(64)  NOT NULL REFERENCES accounts (id),
    created_at   timestamptz  NOT NULL,
    expires_at   timestamptz  NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX auth_sessions_account ON auth_sessions (account_id);

CREATE TABLE delivery_streams (
    account_id  varchar(64) PRIMARY KEY REFERENCES accounts (id),
    last_seq    bigint      NOT NULL DEFAULT 0
);

CREATE TABLE deliveries (
    account_id  varchar(64)  NOT NULL,
    seq         bigint       NOT NULL,
    msg_id      varchar(64)  NOT NULL,
    type        varchar(100) NOT NULL,
    body        text         NOT NULL,
    created_at  timestamptz  NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE INDEX deliveries_created ON deliveries (created_at);

CREATE TABLE stream_cursors (
    account_id  varchar(64)  NOT NULL,
    device_id   varchar(100) NOT NULL,
    acked_seq   bigint       NOT NULL,
    updated_at  timestamptz  NOT NULL,
    PRIMARY KEY (account_id, device_id)
);

-- The demo hospital's directory; the outpatient issue extends it.
CREATE TABLE departments (
    id        varchar(32)  PRIMARY KEY,
    name      varchar(100) NOT NULL,
    campus    varchar(100) NOT NULL,
    location  varchar(200) NOT NULL
);

CREATE TABLE doctors (
    account_id     varchar(64)  PRIMARY KEY REFERENCES accounts (id),
    department_id  varchar(32)  NOT NULL REFERENCES departments (id),
    title          varchar(50)  NOT NULL,
    specialty      varchar(200) NOT NULL
);
