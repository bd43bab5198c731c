package directory_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tohost/tohost/directory"
)

// labels returns n fields labelled prefix0, prefix1...
func labels(prefix string, n int) []directory.Field {
	fs := make([]directory.Field, n)
	for i := range fs {
		fs[i] = directory.Field{Label: fmt.Sprintf("%s%d", prefix, i), Value: "v"}
	}
	return fs
}

// TestRecordBounds: a user cannot be grown past MaxFields or
// MaxRecordBytes, by one write or by many; Set, Create and Modify alike,
// on both stores; the refused write changes nothing.
func TestRecordBounds(t *testing.T) {
	onEveryStore(t, func(t *testing.T, svc *directory.Service) {
		ctx := context.Background()
		if _, err := svc.Set(ctx, "big@x", "pw", labels("a", directory.MaxFields+1)); !isInput(err, "too many fields") {
			t.Fatalf("new user with %d fields: %v", directory.MaxFields+1, err)
		}
		if err := svc.Create(ctx, "big@x", "pw", labels("a", directory.MaxFields+1)); !isInput(err, "too many fields") {
			t.Fatalf("create with %d fields: %v", directory.MaxFields+1, err)
		}
		// Grown a few labels at a time, as repeated sets would.
		if _, err := svc.Set(ctx, "grow@x", "pw", nil); err != nil {
			t.Fatal(err)
		}
		var err error
		for i := 0; err == nil && i < 100; i++ {
			_, err = svc.Set(ctx, "grow@x", "", labels(fmt.Sprintf("l%d_", i), 10))
		}
		if !isInput(err, "too many fields") {
			t.Fatalf("growing set: %v", err)
		}
		u, _ := svc.Lookup(ctx, "grow@x")
		if len(u.Fields) > directory.MaxFields || len(u.Fields) < directory.MaxFields-10 {
			t.Fatalf("grown user holds %d fields", len(u.Fields))
		}
		big := strings.Repeat("x", directory.MaxRecordBytes)
		if _, err := svc.Set(ctx, "grow@x", "", []directory.Field{{Label: "l0_0", Value: big}}); !isInput(err, "record too large") {
			t.Fatalf("64 KiB value: %v", err)
		}
		_, err = svc.Modify(ctx, "grow@x", func(u *directory.User) error {
			u.Fields = append(u.Fields, labels("m", 20)...)
			return nil
		})
		if !isInput(err, "too many fields") {
			t.Fatalf("modify past the bound: %v", err)
		}
		after, _ := svc.Lookup(ctx, "grow@x")
		if after.Version != u.Version || len(after.Fields) != len(u.Fields) {
			t.Fatalf("refused writes changed the user: version %d→%d, fields %d→%d", u.Version, after.Version, len(u.Fields), len(after.Fields))
		}
		// Removing fields is always allowed.
		if _, err := svc.Set(ctx, "grow@x", "", []directory.Field{{Label: "l0_0", Value: ""}}); err != nil {
			t.Fatalf("removing a field: %v", err)
		}
	})
}

func isInput(err error, msg string) bool {
	in, ok := err.(*directory.InputError)
	return ok && strings.Contains(in.Msg, msg)
}

// TestOneNameOneUser: a name with invalid UTF-8 is refused by every way in
// on both stores (it never becomes another user's name), and names that
// differ beyond ASCII case are different users.
func TestOneNameOneUser(t *testing.T) {
	onEveryStore(t, func(t *testing.T, svc *directory.Service) {
		ctx := context.Background()
		if _, err := svc.Set(ctx, "victim\xff@x.com", "pw", nil); err != nil {
			if !isInput(err, "not valid UTF-8") {
				t.Fatalf("set with \\xff: %v", err)
			}
		} else {
			t.Fatal("a name with invalid UTF-8 was stored")
		}
		if _, err := svc.Set(ctx, "kelvin@x.com", "pw-k", nil); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"victim\x80@x.com", "kelvin\x80@x.com"} {
			if _, err := svc.Check(ctx, name, "pw-k"); !isInput(err, "not valid UTF-8") {
				t.Fatalf("check %q: %v", name, err)
			}
			if _, err := svc.Lookup(ctx, name); !isInput(err, "not valid UTF-8") {
				t.Fatalf("lookup %q: %v", name, err)
			}
		}
		if _, err := svc.Check(ctx, "\u212Aelvin@x.com", "pw-k"); err == nil {
			t.Fatal("the Kelvin sign logs in as k")
		}
		if _, err := svc.Check(ctx, "KELVIN@X.COM", "pw-k"); err != nil {
			t.Fatalf("ASCII case must not matter: %v", err)
		}
		if _, err := svc.Set(ctx, "\u212Aelvin@x.com", "pw-K", nil); err != nil {
			t.Fatal(err)
		}
		if u, _ := svc.Lookup(ctx, "kelvin@x.com"); u == nil || u.Display != "kelvin@x.com" {
			t.Fatalf("kelvin@x.com became %+v", u)
		}
	})
}
