-- The trigram index of names, split in four partial indexes by a hash of
-- the name.

-- +goose Up

-- PostgreSQL before 18 builds a GIN index on one core, and the trigram
-- index took longer to build after a bulk import than the rows took to
-- load (a million names: about 5 s on one core). Four partial indexes, one
-- per quarter of the names, are built side by side on as many cores
-- (after a bulk import, or a REINDEX) and together hold what the one index
-- held. A search names all four quarters, ORed (nameShards in
-- directory/store/postgres/search.go), which the planner answers with a
-- BitmapOr of the four; the statistics below tell it that the OR is true
-- for every row, so it still estimates the search's own selectivity right.
-- hashtext is the hash PostgreSQL's hash partitioning relies on, so it is
-- kept stable across versions.
DROP INDEX users_name_trgm;
CREATE INDEX users_name_trgm_0 ON users USING gin (name gin_trgm_ops) WHERE (hashtext(name) & 3) = 0;
CREATE INDEX users_name_trgm_1 ON users USING gin (name gin_trgm_ops) WHERE (hashtext(name) & 3) = 1;
CREATE INDEX users_name_trgm_2 ON users USING gin (name gin_trgm_ops) WHERE (hashtext(name) & 3) = 2;
CREATE INDEX users_name_trgm_3 ON users USING gin (name gin_trgm_ops) WHERE (hashtext(name) & 3) = 3;
CREATE STATISTICS users_name_shard ON ((hashtext(name) & 3)) FROM users;

-- A bulk import interrupted before this migration may have recorded the
-- old index to be built again; the four above replace it.
-- +goose StatementBegin
DO $$
BEGIN
    IF to_regclass('tohost_import_index') IS NOT NULL THEN
        DELETE FROM tohost_import_index WHERE name = 'users_name_trgm';
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP STATISTICS users_name_shard;
DROP INDEX users_name_trgm_0, users_name_trgm_1, users_name_trgm_2, users_name_trgm_3;
CREATE INDEX users_name_trgm ON users USING gin (name gin_trgm_ops);
