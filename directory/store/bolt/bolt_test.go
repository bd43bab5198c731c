package bolt

import (
	"context"
	"errors"
	"testing"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) directory.Store {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestWriteAfterClose(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	err = s.Delete(context.Background(), "a@x")
	if !errors.Is(err, directory.ErrUnavailable) {
		t.Fatalf("write after close: %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestReopen: what was committed is there after closing and opening the
// file again, count included.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []string{"a@x", "b@x"} {
		_, err := s.Update(ctx, n, func(*directory.User) (*directory.User, error) {
			return &directory.User{Name: n, Password: "{PLAIN}x"}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _ := s.Count(ctx); n != 2 {
		t.Fatalf("count after reopen = %d", n)
	}
	if u, err := s.Get(ctx, "b@x"); err != nil || u.Password != "{PLAIN}x" {
		t.Fatalf("get after reopen: %v %v", u, err)
	}
}
