package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tohost/tohost/internal/testservices"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/store/bolt"
)

// flaky is a real embedded store that fails every call while broken, as
// a database that went away does: with an error wrapping ErrUnavailable.
type flaky struct {
	directory.Store
	broken atomic.Bool
}

func (f *flaky) Get(ctx context.Context, name string) (*directory.User, error) {
	if f.broken.Load() {
		return nil, fmt.Errorf("%w: connection refused", directory.ErrUnavailable)
	}
	return f.Store.Get(ctx, name)
}

// lines is what a log holds, a line each.
func lines(log *testservices.Buffer) []string {
	return strings.Split(strings.TrimSpace(log.String()), "\n")
}

func newFlaky(t *testing.T) (*flaky, *Store, *testservices.Buffer) {
	st, err := bolt.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &flaky{Store: st}
	var buf testservices.Buffer
	w := New(f, "bolt", slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { w.Close() })
	return f, w, &buf
}

// TestStormLogsTwoLines: thousands of failing calls, from many goroutines
// at once, write one ERROR line; the first answer after them one INFO
// line with their count; later answers nothing.
func TestStormLogsTwoLines(t *testing.T) {
	f, w, buf := newFlaky(t)
	ctx := context.Background()
	if _, err := w.Get(ctx, "nobody@x"); !errors.Is(err, directory.ErrNotFound) {
		t.Fatal(err)
	}
	f.broken.Store(true)
	const calls = 8 * 2000
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range calls / 8 {
				if _, err := w.Get(ctx, "u@x"); !errors.Is(err, directory.ErrUnavailable) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if !w.Down() {
		t.Error("not down during the outage")
	}
	f.broken.Store(false)
	for range 100 {
		w.Get(ctx, "nobody@x")
	}
	if w.Down() {
		t.Error("still down after an answer")
	}
	lines := lines(buf)
	if len(lines) != 2 {
		t.Fatalf("%d lines for %d failures:\n%s", len(lines), calls, strings.Join(lines, "\n"))
	}
	if !strings.Contains(lines[0], `level=ERROR msg="store unavailable" store=bolt err="directory unavailable: connection refused"`) {
		t.Errorf("first line: %s", lines[0])
	}
	if !strings.Contains(lines[1], fmt.Sprintf(`level=INFO msg="store available again" store=bolt failed=%d down_for=`, calls)) {
		t.Errorf("second line: %s", lines[1])
	}
}

// TestCallerGaveUp: a failure of a call whose context is done is the
// caller's (a client that hung up), not an outage.
func TestCallerGaveUp(t *testing.T) {
	f, w, buf := newFlaky(t)
	f.broken.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.Get(ctx, "u@x")
	if w.Down() || strings.TrimSpace(buf.String()) != "" {
		t.Fatalf("a canceled call counted as an outage: %s", buf.String())
	}
}
