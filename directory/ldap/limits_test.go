package ldap

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
	"github.com/jimlambrt/gldap"

	"github.com/tohost/tohost/directory"
)

// shortNames returns n distinct attribute names of at most three
// characters, so that 200,000 of them fit in one request (1 MiB).
func shortNames(n int) []string {
	const digits = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	out := make([]string, n)
	for i := range out {
		var b []byte
		for v := i; ; v /= len(digits) {
			b = append(b, digits[v%len(digits)])
			if v < len(digits) {
				break
			}
		}
		out[i] = string(b)
	}
	return out
}

// TestHugeAttributeList: a list of 200,000 attribute names costs nothing
// before its answer: an anonymous client is refused before the list is
// looked at, and anyone else, the admin included, gets adminLimitExceeded
// naming the limit. (Deduplicating such a list took minutes of CPU: the
// client's usual 10 s timeout passed first.)
func TestHugeAttributeList(t *testing.T) {
	h := start(t, adminConfig())
	h.user("alice@example.com")
	names := shortNames(200_000)
	req := func(base string, scope int) *goldap.SearchRequest {
		return goldap.NewSearchRequest(base, scope, 0, 0, 0, false, "(objectClass=*)", names, nil)
	}
	_, err := h.dial().Search(req(testBase, goldap.ScopeWholeSubtree))
	wantCode(t, err, goldap.LDAPResultInsufficientAccessRights)

	_, err = h.admin().Search(req(testBase, goldap.ScopeWholeSubtree))
	wantCode(t, err, goldap.LDAPResultAdminLimitExceeded)
	if !strings.Contains(err.Error(), "attribute list of 200000 names is over the limit of 1000") {
		t.Errorf("diagnostic: %v", err)
	}
	// The root DSE, readable anonymously, is bounded the same way.
	_, err = h.dial().Search(req("", goldap.ScopeBaseObject))
	wantCode(t, err, goldap.LDAPResultAdminLimitExceeded)

	// At the limit, duplicates in any case count once.
	list := []string{"MAIL", "mail", "Mail", "uid"}
	for i := len(list); i < maxAttributes; i++ {
		list = append(list, fmt.Sprintf("x-%d", i))
	}
	res, err := h.admin().Search(goldap.NewSearchRequest(userDN("alice@example.com"), goldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", list, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("%d names: %v", len(list), err)
	}
	if a := res.Entries[0].Attributes; len(a) != 2 || a[0].Name != "mail" || a[1].Name != "uid" {
		t.Errorf("attributes %v", res.Entries[0].Attributes)
	}
	// Over the size bound with few names.
	long := []string{strings.Repeat("a", maxAttributeBytes/2), strings.Repeat("b", maxAttributeBytes/2+1)}
	_, err = h.admin().Search(goldap.NewSearchRequest(testBase, goldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", long, nil))
	wantCode(t, err, goldap.LDAPResultAdminLimitExceeded)
}

// TestSelectionDedupe: past the few names searched without a map, names
// differing only in case are still one attribute. (BenchmarkNewSelection
// shows the cost per name staying flat from 100 to 100,000 names.)
func TestSelectionDedupe(t *testing.T) {
	names := shortNames(10_000)
	list := append(names, make([]string, len(names))...)
	for i, n := range names {
		list[len(names)+i] = strings.ToUpper(n)
	}
	s := newSelection(list)
	// Names differing only in case are one attribute.
	distinct := map[string]bool{}
	for _, n := range names {
		distinct[strings.ToLower(n)] = true
	}
	if len(s.keys) != len(distinct) {
		t.Fatalf("%d keys, want %d", len(s.keys), len(distinct))
	}
	if !s.has("a") || !s.has(attrKey("ZZ")) || s.has("mail") {
		t.Error("has")
	}
}

func BenchmarkNewSelection(b *testing.B) {
	for _, n := range []int{4, 100, 1000, 100_000} {
		names := shortNames(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				newSelection(names)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/name")
		})
	}
}

// TestFilterLimits: a filter over the size or depth bound gets
// adminLimitExceeded, naming the limit.
func TestFilterLimits(t *testing.T) {
	h := start(t, adminConfig())
	c := h.admin()
	values := make([]string, 0, 2000)
	for i := range 2000 {
		values = append(values, fmt.Sprintf("(cn=name-%050d)", i))
	}
	_, err := search(t, c, testBase, goldap.ScopeWholeSubtree, "(|"+strings.Join(values, "")+")")
	wantCode(t, err, goldap.LDAPResultAdminLimitExceeded)
	if !strings.Contains(err.Error(), "filter of") {
		t.Errorf("diagnostic: %v", err)
	}
	deep := strings.Repeat("(!", maxFilterDepth+1) + "(uid=a)" + strings.Repeat(")", maxFilterDepth+1)
	_, err = search(t, c, testBase, goldap.ScopeWholeSubtree, deep)
	wantCode(t, err, goldap.LDAPResultAdminLimitExceeded)
	if !strings.Contains(err.Error(), "nested deeper than the limit of 64") {
		t.Errorf("diagnostic: %v", err)
	}
	ok := strings.Repeat("(!", maxFilterDepth) + "(uid=a)" + strings.Repeat(")", maxFilterDepth)
	_, err = search(t, c, testBase, goldap.ScopeWholeSubtree, ok)
	wantCode(t, err, goldap.LDAPResultSuccess)
}

// TestServerSizeLimit: past the server's size limit a search ends with
// sizeLimitExceeded and the entries sent so far; a client's smaller limit
// wins; the admin is exempt; a paged search is bounded per page.
func TestServerSizeLimit(t *testing.T) {
	h := start(t, options{cfg: Config{AnonymousRead: true, AdminPassword: testAdminPW, SizeLimit: 5}})
	fill(h, 20)
	users := "ou=users," + testBase
	c := h.dial()
	for _, tc := range []struct{ client, want int }{{0, 5}, {3, 3}, {10, 5}} {
		res, err := c.Search(goldap.NewSearchRequest(users, goldap.ScopeSingleLevel, 0, tc.client, 0, false, "(uid=*)", []string{"1.1"}, nil))
		wantCode(t, err, goldap.LDAPResultSizeLimitExceeded)
		if res == nil || len(res.Entries) != tc.want {
			t.Errorf("client limit %d: %v, want %d entries", tc.client, res, tc.want)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("size limit of %d entries", tc.want)) {
			t.Errorf("diagnostic: %v", err)
		}
	}
	res, err := h.admin().Search(goldap.NewSearchRequest(users, goldap.ScopeSingleLevel, 0, 0, 0, false, "(uid=*)", []string{"1.1"}, nil))
	if err != nil || len(res.Entries) != 20 {
		t.Errorf("admin: %v", err)
	}
	// Pages of 100 asked for come as pages of 5, all 20 entries in all.
	pc := goldap.NewControlPaging(100)
	req := goldap.NewSearchRequest(users, goldap.ScopeSingleLevel, 0, 0, 0, false, "(uid=*)", []string{"1.1"}, []goldap.Control{pc})
	seen := map[string]bool{}
	for page := 1; ; page++ {
		res, err := c.Search(req)
		if err != nil || len(res.Entries) > 5 || page > 5 {
			t.Fatalf("page %d: %v", page, err)
		}
		for _, e := range res.Entries {
			seen[e.DN] = true
		}
		cookie := goldap.FindControl(res.Controls, goldap.ControlTypePaging).(*goldap.ControlPaging).Cookie
		if len(cookie) == 0 {
			break
		}
		pc.SetCookie(cookie)
	}
	if len(seen) != 20 {
		t.Errorf("paged: %d entries, want 20", len(seen))
	}
}

// TestServerTimeLimit: a search still running at the server's time limit
// ends with timeLimitExceeded, after the entries found so far. The store
// holds the scan until the search's context ends, so the outcome does not
// depend on how fast the machine is.
func TestServerTimeLimit(t *testing.T) {
	hs := &scanHook{at: 4}
	h := start(t, options{cfg: Config{AnonymousRead: true, TimeLimit: 50 * time.Millisecond}, wrap: hs.wrap})
	fill(h, 20)
	hs.arm()
	res, err := h.dial().Search(goldap.NewSearchRequest("ou=users,"+testBase, goldap.ScopeSingleLevel, 0, 0, 0, false, "(uid=*)", []string{"1.1"}, nil))
	wantCode(t, err, goldap.LDAPResultTimeLimitExceeded)
	if res == nil || len(res.Entries) != 3 {
		t.Errorf("%v, want the 3 entries found before the limit", res)
	}
	if r := <-hs.done; r.cause != errTimeLimit {
		t.Errorf("cause %v", r.cause)
	}
}

func TestLimitsFor(t *testing.T) {
	s := New(nil, Config{SizeLimit: 500, TimeLimit: time.Minute})
	user, admin := &session{name: "u"}, &session{admin: true}
	for _, tc := range []struct {
		ss         *session
		size, time int64
		page       *gldap.ControlPaging
		want       limits
	}{
		{user, 0, 0, nil, limits{size: 500, time: time.Minute}},
		{user, 10, 5, nil, limits{size: 10, time: 5 * time.Second}},
		{user, 1000, 1000, nil, limits{size: 500, time: time.Minute}},
		{admin, 0, 0, nil, limits{}},
		{admin, 10, 5, nil, limits{size: 10, time: 5 * time.Second}},
		{user, 0, 0, &gldap.ControlPaging{PagingSize: 1000}, limits{page: 500, time: time.Minute}},
		{user, 700, 0, &gldap.ControlPaging{PagingSize: 100}, limits{size: 700, page: 100, time: time.Minute}},
		{admin, 0, 0, &gldap.ControlPaging{PagingSize: 1000}, limits{page: 1000}},
	} {
		m := &gldap.SearchMessage{SizeLimit: tc.size, TimeLimit: tc.time}
		if got := s.limitsFor(tc.ss, m, tc.page); got != tc.want {
			t.Errorf("%+v size %d time %d page %v: %+v, want %+v", tc.ss, tc.size, tc.time, tc.page, got, tc.want)
		}
	}
	if s := New(nil, Config{SizeLimit: -1, TimeLimit: -1}); s.limitsFor(user, &gldap.SearchMessage{}, nil) != (limits{}) {
		t.Error("negative limits are none")
	}
}

// scanHook is a store whose Search counts the users it hands out and, once
// armed, holds the scan at user number at until the search's context ends.
// With deaf, it then hands out nothing more, as a callback that ignores the
// cancellation would, so that the store's scan itself must stop.
type scanHook struct {
	directory.Store
	at      int64
	deaf    bool
	armed   atomic.Bool
	scanned atomic.Int64
	reached chan struct{} // closed when the scan holds
	done    chan scanResult
	once    sync.Once
}

type scanResult struct {
	err     error
	cause   error
	scanned int64
}

func (s *scanHook) wrap(st directory.Store) directory.Store {
	s.Store = st
	s.reached, s.done = make(chan struct{}), make(chan scanResult, 1)
	return s
}

func (s *scanHook) arm() { s.armed.Store(true) }

func (s *scanHook) Search(ctx context.Context, m directory.Match, fn func(*directory.User) error) error {
	if !s.armed.Load() {
		return s.Store.Search(ctx, m, fn)
	}
	err := s.Store.Search(ctx, m, func(u *directory.User) error {
		if n := s.scanned.Add(1); n == s.at {
			s.once.Do(func() { close(s.reached) })
			select {
			case <-ctx.Done():
			case <-time.After(30 * time.Second): // nothing cancelled the search: the test fails below
			}
		}
		if s.deaf && ctx.Err() != nil {
			return nil
		}
		return fn(u)
	})
	s.done <- scanResult{err: err, cause: context.Cause(ctx), scanned: s.scanned.Load()}
	return err
}

// fillFast creates n users on 8 connections to the store.
func fillFast(h *harness, n int) {
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := h.svc.Set(context.Background(), fmt.Sprintf("user%04d@example.com", i), "{SSHA}x", []directory.Field{{Label: "quota", Value: fmt.Sprint(i)}}); err != nil {
					h.t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// scanSearch sends a search over every user that matches none of them
// (the worst case: nothing is written that could notice the client), on a
// raw connection.
func scanSearch(h *harness) *rawConn {
	rc := h.raw()
	sr, err := encodeSearch(goldap.NewSearchRequest(testBase, goldap.ScopeWholeSubtree, 0, 0, 0, false, "(quota>=999999)", []string{"1.1"}, nil))
	if err != nil {
		h.t.Fatal(err)
	}
	rc.send(sr)
	return rc
}

const scanUsers = 1500 // more than one store chunk (bbolt 1,000 keys; PostgreSQL pages of 100, then 1,000)

// TestClientGoneStopsSearch: a client that hangs up in the middle of a
// search makes it stop, down to the store's scan, on both stacks.
func TestClientGoneStopsSearch(t *testing.T) {
	for _, st := range stacks {
		t.Run(st.name, func(t *testing.T) {
			hs := &scanHook{at: 10, deaf: true}
			h := start(t, options{cfg: Config{AnonymousRead: true}, open: st.open, wrap: hs.wrap})
			fillFast(h, scanUsers)
			hs.arm()
			rc := scanSearch(h)
			<-hs.reached
			rc.c.Close()
			r := <-hs.done
			if r.cause != gldap.ErrClientGone {
				t.Fatalf("search context: %v, want cancelled as the client is gone", r.cause)
			}
			t.Logf("the scan stopped after %d of %d users: %v", r.scanned, scanUsers, r.err)
			if r.err == nil || r.scanned >= scanUsers {
				t.Errorf("the scan went on: returned %v after %d of %d users", r.err, r.scanned, scanUsers)
			}
		})
	}
}

// TestStopCutsSearch: stopping the server ends a search in progress with
// unavailable, then the Notice of Disconnection.
func TestStopCutsSearch(t *testing.T) {
	hs := &scanHook{at: 10}
	h := start(t, options{cfg: Config{AnonymousRead: true}, wrap: hs.wrap})
	fillFast(h, 100)
	hs.arm()
	rc := scanSearch(h)
	<-hs.reached
	h.stop()
	if r := <-hs.done; r.cause != gldap.ErrServerStopping {
		t.Fatalf("search context: %v", r.cause)
	}
	if _, tag, code, _ := rc.read(); tag != ber.Tag(goldap.ApplicationSearchResultDone) || code != goldap.LDAPResultUnavailable {
		t.Errorf("search answer: tag %d code %d", tag, code)
	}
	rc.expectClosed(goldap.LDAPResultUnavailable)
}

// BenchmarkHugeAttributeList: one anonymous search listing 100,000
// attribute names (789 KB), answered insufficientAccessRights, on one
// connection; the request is encoded once.
func BenchmarkHugeAttributeList(b *testing.B) {
	h := start(b, adminConfig())
	names := make([]string, 100_000)
	for i := range names {
		names[i] = fmt.Sprintf("a%d", i)
	}
	sr, err := encodeSearch(goldap.NewSearchRequest(testBase, goldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=*)", names, nil))
	if err != nil {
		b.Fatal(err)
	}
	rc := h.raw()
	msg := rc.message(sr)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		rc.c.SetDeadline(time.Now().Add(10 * time.Second))
		rc.write(msg)
		if _, _, code, _ := rc.read(); code != goldap.LDAPResultInsufficientAccessRights {
			b.Fatalf("code %d", code)
		}
	}
}
