-- Roles own permission sets and the menus their members see (SCH-1, SCH-11, ADM-1).
-- Built-in roles are filled in at first start from carehub/identity/permissions.py; admins change them.

CREATE TABLE roles (
    name         varchar(40)   PRIMARY KEY,
    description  varchar(200)  NOT NULL,
    builtin      boolean       NOT NULL DEFAULT false
);

CREATE TABLE role_permissions (
    role        varchar(40)  NOT NULL REFERENCES roles (name),
    permission  varchar(60)  NOT NULL,
    PRIMARY KEY (role, permission)
);

CREATE TABLE role_menus (
    role  varchar(40)  NOT NULL REFERENCES roles (name),
    menu  varchar(60)  NOT NULL,
    PRIMARY KEY (role, menu)
);
