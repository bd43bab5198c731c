-- The directory: one row per user, plus a user counter kept by triggers.

-- +goose Up

-- pg_trgm indexes names for substring and wildcard search (LIKE '%x%').
-- It is a trusted extension (PostgreSQL 13+): the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Text columns that are compared or indexed use COLLATE "C": names sort
-- byte-wise, the same order as the embedded store, and comparisons are
-- memcmp, not locale rules. It also keeps the indexes valid across libc
-- upgrades, which change locale collations and would corrupt the index of
-- 100M rows. With "C" the primary key btree also serves prefix search
-- (name LIKE 'abc%' becomes a range scan), so no separate text_pattern_ops
-- index is needed: it would be a second copy of the same byte order.
CREATE TABLE users (
    name     text COLLATE "C" PRIMARY KEY, -- normalized (lower-case) name
    display  text NOT NULL,                -- the name as first written
    domain   text COLLATE "C",             -- the part after '@'; NULL if none
    password text NOT NULL,                -- stored hash
    tohost   text COLLATE "C",             -- copy of the tohost field; NULL if unset
    fields   jsonb NOT NULL DEFAULT '[]',  -- [[label, value], ...] in order, tohost included
    created  timestamptz NOT NULL,
    updated  timestamptz NOT NULL,
    version  bigint NOT NULL DEFAULT 0
);

-- Substring and wildcard patterns with no literal prefix ('%@b.com').
CREATE INDEX users_name_trgm ON users USING gin (name gin_trgm_ops);
-- "Who lives on backend X" and "every user of domain Y".
CREATE INDEX users_tohost ON users (tohost);
CREATE INDEX users_domain ON users (domain);

-- The number of users without count(*) over 100M rows. One counter row
-- would serialize every concurrent create and delete on its row lock until
-- commit, so the count is split over 16 shard rows: a statement adds to the
-- shard of its backend (pg_backend_pid() % 16), so concurrent writers on
-- different connections mostly lock different rows, and a reader sums 16
-- rows. The triggers are statement-level with transition tables, so a bulk
-- COPY of a million users updates a shard once, not a million times; a
-- statement that inserted nothing (ON CONFLICT DO NOTHING) touches no row.
CREATE TABLE user_count (
    shard int PRIMARY KEY,
    n     bigint NOT NULL
);
INSERT INTO user_count (shard, n) SELECT s, 0 FROM generate_series(0, 15) AS s;

-- +goose StatementBegin
CREATE FUNCTION user_count_add() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO d FROM new_users;
    ELSE
        SELECT -count(*) INTO d FROM old_users;
    END IF;
    IF d <> 0 THEN
        UPDATE user_count SET n = n + d WHERE shard = pg_backend_pid() % 16;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION user_count_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_count SET n = 0;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- A trigger with transition tables has one event, hence two triggers.
-- Rename is an UPDATE of the key and changes no count.
CREATE TRIGGER users_count_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS new_users
    FOR EACH STATEMENT EXECUTE FUNCTION user_count_add();
CREATE TRIGGER users_count_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS old_users
    FOR EACH STATEMENT EXECUTE FUNCTION user_count_add();
CREATE TRIGGER users_count_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION user_count_reset();

-- +goose Down
DROP TABLE users;
DROP TABLE user_count;
DROP FUNCTION user_count_add();
DROP FUNCTION user_count_reset();
