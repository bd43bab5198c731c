-- Names are keyed by the ASCII fold of how they were written
-- (directory.FoldName: A-Z lower-cased, every other character kept), no
-- longer by Unicode lower case, which folded distinct names together (the
-- Kelvin sign and "k"). Users whose key changes move to the new key. No
-- two users can meet: names alike under the ASCII fold were alike under
-- the Unicode lower case too. PostgreSQL never held invalid UTF-8.

-- +goose Up
UPDATE users AS u
SET name = f.key,
    domain = CASE WHEN strpos(f.key, '@') > 0 THEN nullif(substr(f.key, strpos(f.key, '@') + 1), '') END
FROM (SELECT name AS old, translate(display, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') AS key
      FROM users) AS f
WHERE u.name = f.old AND f.key <> f.old;

-- +goose Down
-- Keys made by the fold are kept: the old rule cannot tell them apart.
SELECT 1;
