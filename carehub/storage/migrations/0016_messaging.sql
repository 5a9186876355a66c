-- Message center (MSG-1..8, OUT-15): the inbox, templates, channel bindings and settings, the
-- receipt-first markers of providers that do not deduplicate, and the publish API's records.

-- every notice to an account (the notifier actor's projection): the inbox (read/unread, paging),
-- its outside-channel progress, the dead-letter list (status 'dead'), and notices scheduled for later
-- (status 'scheduled', created_at = when they are due; not in the inbox until posted; 'cancelled' when
-- their reason went away)
CREATE TABLE notices (
    id varchar(80) PRIMARY KEY,
    account_id varchar(64) NOT NULL,
    kind varchar(40) NOT NULL,
    category varchar(20) NOT NULL,
    title varchar(80) NOT NULL,
    body text NOT NULL,
    link varchar(300),
    -- NAV-2: indoor navigation to the department the notice names
    nav varchar(300),
    critical boolean NOT NULL DEFAULT false,
    needs_ack boolean NOT NULL DEFAULT false,
    source varchar(64) NOT NULL DEFAULT '',
    status varchar(16) NOT NULL,
    plan varchar(40) NOT NULL DEFAULT '',
    channel varchar(16),
    provider_id varchar(64),
    attempts integer NOT NULL DEFAULT 0,
    last_error varchar(300) NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    sent_at timestamptz,
    dead_at timestamptz,
    -- the provider's later report (WeChat TEMPLATESENDJOBFINISH, SMS report): written by the callback routes
    reported_at timestamptz,
    report varchar(80),
    -- a scheduled notice (a reminder) that fired after its time (the hub was down): posted late, never dropped
    late boolean NOT NULL DEFAULT false,
    -- written by the recipient's own "mark read" (the actor never writes it)
    read_at timestamptz
);
CREATE INDEX notices_inbox ON notices (account_id, created_at, id);
CREATE INDEX notices_status ON notices (status, created_at);
CREATE INDEX notices_provider ON notices (provider_id);

-- templates admins edit (a kind without a row uses the default of carehub/messaging/kinds.py)
CREATE TABLE notice_templates (
    kind varchar(40) PRIMARY KEY,
    title varchar(80) NOT NULL,
    body text NOT NULL,
    sms_template varchar(40),
    wechat_template varchar(64),
    alipay_template varchar(64),
    updated_at timestamptz NOT NULL,
    updated_by varchar(64) NOT NULL
);

-- an outside channel switched on or off, and its default provider template
CREATE TABLE notice_channels (
    channel varchar(16) PRIMARY KEY,
    enabled boolean NOT NULL,
    default_template varchar(64),
    updated_at timestamptz NOT NULL,
    updated_by varchar(64) NOT NULL
);

-- where an account is reached outside the app: a WeChat openid, an Alipay user id (the phone is the account's)
CREATE TABLE channel_bindings (
    account_id varchar(64) NOT NULL,
    channel varchar(16) NOT NULL,
    address varchar(128) NOT NULL,
    bound_at timestamptz NOT NULL,
    PRIMARY KEY (account_id, channel)
);

-- written before a send to a provider that does not deduplicate (SMS, Alipay): after a crash between
-- the send and its result, a marker found means "ask the provider whether it took it" before sending again
CREATE TABLE notice_attempts (
    send_key varchar(120) PRIMARY KEY,
    started_at timestamptz NOT NULL
);

-- the publish API (MSG-1): what each partner may publish, and the first answer to each idempotency key
CREATE TABLE partner_publish_rules (
    partner_id varchar(64) PRIMARY KEY,
    kinds text NOT NULL,
    audiences varchar(40) NOT NULL,
    per_minute integer NOT NULL,
    updated_at timestamptz NOT NULL,
    updated_by varchar(64) NOT NULL
);

CREATE TABLE open_messages (
    partner_id varchar(64) NOT NULL,
    idempotency_key varchar(80) NOT NULL,
    answer text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (partner_id, idempotency_key)
);

-- the admins of a database made before the message center may edit its templates and channels
INSERT INTO role_permissions (role, permission)
SELECT name, 'admin.messaging' FROM roles WHERE name = 'admin'
    AND NOT EXISTS (SELECT 1 FROM role_permissions WHERE role = 'admin' AND permission = 'admin.messaging');
