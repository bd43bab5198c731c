package postgres

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tohost/tohost/directory"
)

// Search reads pages of users by keyset (name > last ORDER BY name LIMIT
// n): every page is a short query of its own, so a search over millions of
// users holds no transaction or snapshot open, and a page is read before
// fn sees it, so a slow client does not pin a pooled connection. The first
// page is small because most searches want a few names.
const (
	firstPage = 100
	pageSize  = 1000
)

// The first page starts at the smallest name (>=), later ones after the
// last name seen (>).
const (
	searchFirst = `SELECT ` + columns + ` FROM users WHERE name LIKE $1 AND name >= $2 AND ` + nameShards + ` ORDER BY name LIMIT $3`
	searchNext  = `SELECT ` + columns + ` FROM users WHERE name LIKE $1 AND name > $2 AND ` + nameShards + ` ORDER BY name LIMIT $3`
)

// nameShards is true for every name. The trigram index is four partial
// indexes, one per value of this hash (schema migration 00002, so that a
// rebuild runs on four cores); the planner uses a partial index only for
// a condition that implies its WHERE, and with this OR it answers a
// substring search with a BitmapOr of the four.
const nameShards = `((hashtext(name) & 3) = 0 OR (hashtext(name) & 3) = 1 OR (hashtext(name) & 3) = 2 OR (hashtext(name) & 3) = 3)`

// Search implements directory.Store.
func (s *Store) Search(ctx context.Context, m directory.Match, fn func(*directory.User) error) error {
	if !storable(m.Pattern) {
		return nil // stored names are valid UTF-8 without NUL; none matches
	}
	pattern := likePattern(m)
	q, after, limit := searchFirst, "", firstPage
	if m.After != "" {
		q, after = searchNext, m.After
	}
	for {
		page, err := s.searchPage(ctx, q, pattern, after, limit)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err() // the caller gave up (its client left): not an outage
			}
			return s.unavailable(err)
		}
		for _, u := range page {
			if err := fn(u); err != nil {
				return err
			}
		}
		if len(page) < limit {
			return nil
		}
		q, after, limit = searchNext, page[len(page)-1].Name, pageSize
	}
}

// searchPage runs one page's query. It uses QueryExecModeExec (an unnamed
// statement, planned with the actual pattern) rather than the statement
// cache: a cached generic plan cannot see the pattern's literal prefix, so
// it would scan the whole primary key instead of the prefix's range, or
// miss the trigram indexes.
func (s *Store) searchPage(ctx context.Context, q, pattern, after string, limit int) ([]*directory.User, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, q, pgx.QueryExecModeExec, pattern, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*directory.User, error) {
		return scanUser(row)
	})
}

// likePattern translates m into a LIKE pattern (escape character '\'):
// the pattern's own '%', '_' and '\' match literally, a wildcard Match's
// '*' and '?' become '%' and '_', and a substring Match is wrapped in '%'.
func likePattern(m directory.Match) string {
	var b strings.Builder
	if !m.Wildcard {
		b.WriteByte('%')
	}
	for i := 0; i < len(m.Pattern); i++ {
		switch c := m.Pattern[i]; {
		case c == '%' || c == '_' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case m.Wildcard && c == '*':
			b.WriteByte('%')
		case m.Wildcard && c == '?':
			b.WriteByte('_')
		default:
			b.WriteByte(c)
		}
	}
	if !m.Wildcard {
		b.WriteByte('%')
	}
	return b.String()
}
