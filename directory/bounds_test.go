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
