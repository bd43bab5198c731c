package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/tohost/tohost/directory"
)

// columns is what every query that returns users selects, in scanUser's
// order.
const columns = `name, display, password, fields, created, updated, version`

// scanUser reads one row of columns; no row is ErrNotFound.
func scanUser(row pgx.Row) (*directory.User, error) {
	var u directory.User
	var fields fieldList
	var version int64
	err := row.Scan(&u.Name, &u.Display, &u.Password, &fields, &u.Created, &u.Updated, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, directory.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	u.Fields = fields
	u.Version = uint64(version)
	return &u, nil
}

// userArgs are the parameters $1..$9 of the insert and update statements.
func userArgs(u *directory.User) []any {
	fields := fieldList(u.Fields)
	if fields == nil {
		fields = fieldList{} // pgx sends a nil slice as NULL, not []
	}
	return []any{u.Name, u.Display, nullIfEmpty(directory.Domain(u.Name)), u.Password,
		nullIfEmpty(u.Tohost()), fields, u.Created, u.Updated, int64(u.Version)}
}

// nullIfEmpty stores "" as NULL, so the domain and tohost indexes hold only
// users that have one.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// fieldList is stored as a JSON array of [label, value] pairs: an array
// keeps the order the labels were first set, which an object would lose.
type fieldList []directory.Field

func (l fieldList) MarshalJSON() ([]byte, error) {
	pairs := make([][2]string, len(l))
	for i, f := range l {
		pairs[i] = [2]string{f.Label, f.Value}
	}
	return json.Marshal(pairs)
}

func (l *fieldList) UnmarshalJSON(b []byte) error {
	var pairs [][2]string
	if err := json.Unmarshal(b, &pairs); err != nil {
		return err
	}
	*l = make(fieldList, len(pairs))
	for i, p := range pairs {
		(*l)[i] = directory.Field{Label: p[0], Value: p[1]}
	}
	return nil
}

// checkUser refuses what PostgreSQL cannot store as text: invalid UTF-8
// (the embedded store takes any bytes) and NUL. The database would refuse
// it too, but as an error that looks like a failure of the database, and
// encoding/json would silently replace invalid UTF-8 in field values.
func checkUser(name string, u *directory.User) error {
	if u == nil {
		return fmt.Errorf("update %q: UpdateFunc returned no user", name)
	}
	if u.Name != name {
		return fmt.Errorf("update %q: UpdateFunc returned user %q", name, u.Name)
	}
	if !storable(u.Name) || !storable(u.Display) || !storable(u.Password) {
		return &directory.InputError{Msg: "user name or password is not valid UTF-8"}
	}
	for _, f := range u.Fields {
		if !storable(f.Label) || !storable(f.Value) {
			return &directory.InputError{Msg: fmt.Sprintf("field %q is not valid UTF-8", f.Label)}
		}
	}
	return nil
}

func storable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}
