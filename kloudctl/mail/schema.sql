-- kloudctl mail accounts: the ONE schema read by Postfix (sqlite lookup tables), Dovecot
-- (SQL passdb/userdb) and rspamd (DKIM selector map), written only by kloudctl.
-- Per-domain caps are enforced here, by triggers, so every writer obeys them in the same
-- transaction as its change. Idempotent: applied on every open.

CREATE TABLE IF NOT EXISTS domains (
  name          TEXT PRIMARY KEY,
  max_mailboxes INTEGER NOT NULL CHECK (max_mailboxes >= 1),
  total_quota   INTEGER NOT NULL CHECK (total_quota >= 1),   -- bytes
  default_quota INTEGER NOT NULL CHECK (default_quota >= 1), -- bytes
  active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
  created       TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS mailboxes (
  address    TEXT PRIMARY KEY,                 -- lower-case local@domain
  domain     TEXT NOT NULL REFERENCES domains (name),
  password   TEXT NOT NULL,                    -- '{ARGON2ID}$argon2id$...' (Dovecot scheme kept)
  quota      INTEGER NOT NULL CHECK (quota >= 1),  -- bytes
  suspended  INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
  created    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mailboxes_domain ON mailboxes (domain);

CREATE TABLE IF NOT EXISTS aliases (
  address     TEXT NOT NULL,                   -- an address in one of our domains
  domain      TEXT NOT NULL REFERENCES domains (name),
  destination TEXT NOT NULL,                   -- any address, local or not
  PRIMARY KEY (address, destination)
);
CREATE INDEX IF NOT EXISTS aliases_domain ON aliases (domain);

-- Per-domain administrators: a login listed here may manage only the domains listed for it.
CREATE TABLE IF NOT EXISTS admins (
  login  TEXT NOT NULL,
  domain TEXT NOT NULL REFERENCES domains (name),
  PRIMARY KEY (login, domain)
);

-- DKIM keys: public halves only (private keys stay in files readable by rspamd).
CREATE TABLE IF NOT EXISTS dkim_keys (
  domain     TEXT NOT NULL REFERENCES domains (name),
  selector   TEXT NOT NULL,
  public_key TEXT NOT NULL,                    -- base64 of the DER SubjectPublicKeyInfo
  state      TEXT NOT NULL CHECK (state IN ('published', 'active', 'retired')),
  created    TEXT NOT NULL,
  PRIMARY KEY (domain, selector)
);

-- Who did what: every change and every refused attempt, with its actor (NULL: the
-- operator), never a password. Added in place to existing stores: the schema is applied
-- again whenever its text changes.
CREATE TABLE IF NOT EXISTS audit (
  id      INTEGER PRIMARY KEY,
  at      TEXT NOT NULL,                    -- UTC, 2026-11-30T04:00:00Z
  actor   TEXT,                             -- a domain administrator's login; NULL: operator
  op      TEXT NOT NULL,                    -- the store's operation, e.g. mailbox_add
  target  TEXT NOT NULL,                    -- what it was about: an address, a domain, a login
  outcome TEXT NOT NULL,                    -- 'done', or the refusal: forbidden, refused, ...
  detail  TEXT NOT NULL DEFAULT ''          -- the refusal's message
);

-- The caps, in one place.
CREATE TRIGGER IF NOT EXISTS cap_max_mailboxes BEFORE INSERT ON mailboxes
WHEN (SELECT count(*) FROM mailboxes WHERE domain = NEW.domain)
     >= (SELECT max_mailboxes FROM domains WHERE name = NEW.domain)
BEGIN SELECT RAISE(ABORT, 'cap:max_mailboxes'); END;

CREATE TRIGGER IF NOT EXISTS cap_total_quota_insert BEFORE INSERT ON mailboxes
WHEN (SELECT coalesce(sum(quota), 0) FROM mailboxes WHERE domain = NEW.domain) + NEW.quota
     > (SELECT total_quota FROM domains WHERE name = NEW.domain)
BEGIN SELECT RAISE(ABORT, 'cap:total_quota'); END;

CREATE TRIGGER IF NOT EXISTS cap_total_quota_update BEFORE UPDATE OF quota ON mailboxes
WHEN (SELECT coalesce(sum(quota), 0) FROM mailboxes
      WHERE domain = NEW.domain AND address <> OLD.address) + NEW.quota
     > (SELECT total_quota FROM domains WHERE name = NEW.domain)
BEGIN SELECT RAISE(ABORT, 'cap:total_quota'); END;

CREATE TRIGGER IF NOT EXISTS cap_domain_shrink BEFORE UPDATE OF max_mailboxes, total_quota ON domains
WHEN (SELECT count(*) FROM mailboxes WHERE domain = NEW.name) > NEW.max_mailboxes
  OR (SELECT coalesce(sum(quota), 0) FROM mailboxes WHERE domain = NEW.name) > NEW.total_quota
BEGIN SELECT RAISE(ABORT, 'cap:domain_shrink'); END;

-- Lookup views, one per reader, so the readers' queries stay one-liners.
CREATE VIEW IF NOT EXISTS postfix_domains AS
  SELECT name FROM domains WHERE active = 1;
CREATE VIEW IF NOT EXISTS postfix_mailboxes AS
  SELECT m.address FROM mailboxes m JOIN domains d ON d.name = m.domain WHERE d.active = 1;
CREATE VIEW IF NOT EXISTS postfix_senders AS   -- who may send as an address
  SELECT address AS sender, address AS login FROM mailboxes WHERE suspended = 0
  UNION ALL
  SELECT a.address, a.destination FROM aliases a JOIN mailboxes m ON m.address = a.destination
  WHERE m.suspended = 0;
CREATE VIEW IF NOT EXISTS dovecot_users AS
  SELECT m.address AS user, m.password AS password, m.quota AS quota, m.suspended AS suspended,
         m.domain AS domain, substr(m.address, 1, instr(m.address, '@') - 1) AS local_part
  FROM mailboxes m JOIN domains d ON d.name = m.domain WHERE d.active = 1;
CREATE VIEW IF NOT EXISTS rspamd_selectors AS
  SELECT domain, selector FROM dkim_keys WHERE state = 'active';
