-- The hospital directory and its content (PUB-1..6, OUT-1, GUIDE-1, ADM-2..6): hospital
-- introduction with images, campuses and floors, where each department is, expert profiles,
-- news, visit guide pages, announcements with read counts, the price list with its history,
-- smart-triage rules and site settings (map and triage links).
-- Portable SQL only (PostgreSQL, openGauss, KingbaseES): no extensions, no ON CONFLICT.

-- One row: the hospital's introduction (PUB-1, ADM-4).
CREATE TABLE hospital_info (
    id          integer       PRIMARY KEY,
    name        varchar(100)  NOT NULL,
    intro       text          NOT NULL,
    address     varchar(300)  NOT NULL,
    phone       varchar(40)   NOT NULL,
    updated_at  timestamptz   NOT NULL,
    updated_by  varchar(64),
    CONSTRAINT hospital_info_single CHECK (id = 1)
);

-- Pictures of the hospital, shown in sort_order; the files live on a CDN, we keep their URLs.
CREATE TABLE hospital_images (
    sort_order  integer       PRIMARY KEY,
    url         varchar(500)  NOT NULL,
    caption     varchar(200)  NOT NULL
);

-- Settings the clients read: map_url (PUB-6 directions), triage_url (OUT-1 third-party triage).
CREATE TABLE directory_settings (
    name        varchar(60)    PRIMARY KEY,
    value       varchar(1000)  NOT NULL,
    updated_at  timestamptz    NOT NULL,
    updated_by  varchar(64)
);

CREATE TABLE campuses (
    id          varchar(32)   PRIMARY KEY,
    name        varchar(100)  NOT NULL,
    address     varchar(300)  NOT NULL,
    phone       varchar(40)   NOT NULL,
    map_url     varchar(500)  NOT NULL,
    sort_order  integer       NOT NULL DEFAULT 0
);

-- A floor of a building on a campus (PUB-2); plan_url: the floor plan picture. A campus's floors
-- are replaced as a whole, and CareHub checks that a building names each floor once.
CREATE TABLE floors (
    id          varchar(32)   PRIMARY KEY,
    campus_id   varchar(32)   NOT NULL REFERENCES campuses (id),
    building    varchar(100)  NOT NULL,
    name        varchar(20)   NOT NULL,
    floor_level integer       NOT NULL,   -- 1 ground floor, -1 first basement (for ordering)
    plan_url    varchar(500)  NOT NULL
);
CREATE INDEX floors_campus ON floors (campus_id);

-- Departments gain their place and an introduction. ``campus`` and ``location`` stay as the
-- display text older clients read; CareHub rewrites them whenever the place changes.
ALTER TABLE departments ADD COLUMN floor_id varchar(32) REFERENCES floors (id);
ALTER TABLE departments ADD COLUMN room varchar(50) NOT NULL DEFAULT '';
ALTER TABLE departments ADD COLUMN intro text NOT NULL DEFAULT '';
ALTER TABLE departments ADD COLUMN phone varchar(40) NOT NULL DEFAULT '';
ALTER TABLE departments ADD COLUMN sort_order integer NOT NULL DEFAULT 0;
ALTER TABLE departments ADD COLUMN disabled boolean NOT NULL DEFAULT false;
CREATE INDEX departments_floor ON departments (floor_id);

-- Doctors gain an expert profile (PUB-4); a disabled doctor is left out of the directory.
ALTER TABLE doctors ADD COLUMN intro text NOT NULL DEFAULT '';
ALTER TABLE doctors ADD COLUMN photo_url varchar(500) NOT NULL DEFAULT '';
ALTER TABLE doctors ADD COLUMN expert boolean NOT NULL DEFAULT false;
ALTER TABLE doctors ADD COLUMN disabled boolean NOT NULL DEFAULT false;
CREATE INDEX doctors_department ON doctors (department_id);

-- News (PUB-3): shown from published_at on, unless hidden.
CREATE TABLE news (
    id            varchar(32)   PRIMARY KEY,
    title         varchar(200)  NOT NULL,
    summary       varchar(500)  NOT NULL,
    body          text          NOT NULL,
    cover_url     varchar(500)  NOT NULL,
    published_at  timestamptz   NOT NULL,
    hidden        boolean       NOT NULL DEFAULT false,
    created_by    varchar(64),
    updated_at    timestamptz   NOT NULL
);
CREATE INDEX news_published ON news (published_at);

-- Visit guide pages (PUB-5, GUIDE-1), addressed by a short name such as ``registration``.
CREATE TABLE guide_pages (
    slug        varchar(64)   PRIMARY KEY,
    title       varchar(200)  NOT NULL,
    body        text          NOT NULL,
    sort_order  integer       NOT NULL DEFAULT 0,
    hidden      boolean       NOT NULL DEFAULT false,
    updated_at  timestamptz   NOT NULL,
    updated_by  varchar(64)
);

-- Announcements (ADM-5): shown while starts_at <= now < ends_at, unless withdrawn.
CREATE TABLE announcements (
    id          varchar(32)   PRIMARY KEY,
    title       varchar(200)  NOT NULL,
    body        text          NOT NULL,
    starts_at   timestamptz   NOT NULL,
    ends_at     timestamptz   NOT NULL,
    withdrawn   boolean       NOT NULL DEFAULT false,
    created_by  varchar(64),
    created_at  timestamptz   NOT NULL,
    updated_at  timestamptz   NOT NULL,
    CONSTRAINT announcements_period CHECK (ends_at > starts_at)
);
CREATE INDEX announcements_period ON announcements (starts_at, ends_at);

-- Who read which announcement: one row per account, so the read count counts people.
CREATE TABLE announcement_reads (
    announcement_id  varchar(32)  NOT NULL REFERENCES announcements (id),
    account_id       varchar(64)  NOT NULL REFERENCES accounts (id),
    read_at          timestamptz  NOT NULL,
    PRIMARY KEY (announcement_id, account_id)
);

-- The price list (ADM-6): prices in fen (0.01 yuan), never floating point.
CREATE TABLE price_items (
    code        varchar(32)   PRIMARY KEY,
    name        varchar(200)  NOT NULL,
    category    varchar(50)   NOT NULL,
    unit        varchar(20)   NOT NULL,
    price_fen   bigint        NOT NULL,
    active      boolean       NOT NULL DEFAULT true,
    updated_at  timestamptz   NOT NULL,
    CONSTRAINT price_items_price CHECK (price_fen >= 0)
);

-- Every change to the price list, never edited: the old values are NULL when an item was created.
CREATE TABLE price_changes (
    id              bigserial     PRIMARY KEY,
    code            varchar(32)   NOT NULL REFERENCES price_items (code),
    changed_at      timestamptz   NOT NULL,
    changed_by      varchar(64),
    old_name        varchar(200),
    new_name        varchar(200)  NOT NULL,
    old_category    varchar(50),
    new_category    varchar(50)   NOT NULL,
    old_unit        varchar(20),
    new_unit        varchar(20)   NOT NULL,
    old_price_fen   bigint,
    new_price_fen   bigint        NOT NULL,
    old_active      boolean,
    new_active      boolean       NOT NULL
);
CREATE INDEX price_changes_code ON price_changes (code, id);

-- Smart triage (OUT-1): a body part and symptom keywords (comma-separated), optionally a sex and
-- an age range, recommend departments in rank order; priority orders rules against each other.
CREATE TABLE triage_rules (
    id          varchar(32)   PRIMARY KEY,
    body_part   varchar(50)   NOT NULL,
    keywords    varchar(500)  NOT NULL,
    sex         varchar(8),
    min_age     integer,
    max_age     integer,
    priority    integer       NOT NULL DEFAULT 0,
    note        varchar(200)  NOT NULL,
    updated_at  timestamptz   NOT NULL,
    CONSTRAINT triage_rules_sex CHECK (sex IS NULL OR sex IN ('male', 'female')),
    CONSTRAINT triage_rules_ages CHECK (min_age IS NULL OR max_age IS NULL OR min_age <= max_age)
);
CREATE INDEX triage_rules_body_part ON triage_rules (body_part);

CREATE TABLE triage_rule_departments (
    rule_id        varchar(32)  NOT NULL REFERENCES triage_rules (id),
    department_id  varchar(32)  NOT NULL REFERENCES departments (id),
    sort_order     integer      NOT NULL,
    PRIMARY KEY (rule_id, department_id)
);
