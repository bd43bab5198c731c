package backend

// A stand-in for backend/maildir until it is merged: the same layout
// (<root>/<domain>/<local>/new/), durable the same way.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

type fakeStore struct {
	root string
	seq  atomic.Int64
}

func openStore(root string) (*fakeStore, error) {
	return &fakeStore{root: root}, os.MkdirAll(root, 0o700)
}

func (s *fakeStore) Close() error { return nil }

func (s *fakeStore) dir(user string) string {
	user = strings.ToLower(user)
	local, domain, ok := strings.Cut(user, "@")
	if !ok {
		domain = "_"
	}
	return filepath.Join(s.root, domain, local)
}

func (s *fakeStore) DeliverMany(users []string, r io.Reader) []error {
	errs := make([]error, len(users))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	tmp, err := os.CreateTemp(s.root, "tmp-")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := io.Copy(tmp, r); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	for i, u := range users {
		d := filepath.Join(s.dir(u), "new")
		if err := os.MkdirAll(d, 0o700); err != nil {
			errs[i] = err
			continue
		}
		errs[i] = os.Link(tmp.Name(), filepath.Join(d, fmt.Sprintf("%d.fake", s.seq.Add(1))))
	}
	return errs
}

func (s *fakeStore) Usage(user string) (int64, error) {
	var n int64
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(s.dir(user), sub))
		for _, e := range ents {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
	}
	return n, nil
}
