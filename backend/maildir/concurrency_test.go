package maildir

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// uidBook checks, across every session, that a UID names one key and a
// key has one UID, for the whole test.
type uidBook struct {
	mu    sync.Mutex
	byUID map[uint32]string
	byKey map[string]uint32
	errs  []string
}

func (b *uidBook) see(who string, msgs []Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range msgs {
		if i > 0 && m.UID <= msgs[i-1].UID {
			b.errs = append(b.errs, fmt.Sprintf("%s: UIDs not increasing: %d after %d", who, m.UID, msgs[i-1].UID))
		}
		b.one(who, m.UID, m.Key)
	}
}

func (b *uidBook) one(who string, uid uint32, key string) {
	if k, ok := b.byUID[uid]; ok && k != key {
		b.errs = append(b.errs, fmt.Sprintf("%s: UID %d given to %s and %s", who, uid, k, key))
	}
	if u, ok := b.byKey[key]; ok && u != uid {
		b.errs = append(b.errs, fmt.Sprintf("%s: %s has UIDs %d and %d", who, key, u, uid))
	}
	b.byUID[uid] = key
	b.byKey[key] = uid
}

// TestConcurrentSessions runs deliveries, Syncs, SetFlags, Opens,
// Appends and Expunges on one folder at once, each session with a Folder
// of its own.
func TestConcurrentSessions(t *testing.T) {
	s, root := openStore(t)
	concurrentSessions(t, root, []*Store{s})
}

// TestConcurrentSessionsShared is the same with the deliveries and
// sessions spread over three shared Stores on one root, as three
// processes would be: they share no memory, only the lock files.
func TestConcurrentSessionsShared(t *testing.T) {
	root := t.TempDir()
	var stores []*Store
	for _, h := range []string{"mx1.example", "mx2.example", "mx3.example"} {
		s, err := Open(root, Options{Hostname: h, Shared: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	concurrentSessions(t, root, stores)
}

func concurrentSessions(t *testing.T, root string, stores []*Store) {
	const user = "busy@example.net"
	const deliverers, perDeliverer, sessions = 6, 40, 4
	book := &uidBook{byUID: map[uint32]string{}, byKey: map[string]uint32{}}
	var mu sync.Mutex
	bodies := map[string]string{} // key -> bytes, once delivered
	expunged := map[string]bool{}
	appended := map[uint32]bool{}

	mustFolder(t, stores[0], user, "INBOX")
	var dwg sync.WaitGroup
	for d := 0; d < deliverers; d++ {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			s := stores[d%len(stores)]
			for i := 0; i < perDeliverer; i++ {
				body := fmt.Sprintf("From: d%d\r\n\r\nmessage %d of %d\r\n", d, i, d)
				key, err := s.Deliver(user, bytes.NewBufferString(body))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				bodies[key] = body
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { dwg.Wait(); close(done) }()

	var swg sync.WaitGroup
	for sn := 0; sn < sessions; sn++ {
		swg.Add(1)
		go func() {
			defer swg.Done()
			who := fmt.Sprintf("session %d", sn)
			s := stores[sn%len(stores)]
			mb, err := s.Mailbox(user)
			if err != nil {
				t.Error(err)
				return
			}
			f, err := mb.Folder("INBOX")
			if err != nil {
				t.Error(err)
				return
			}
			rng := rand.New(rand.NewPCG(uint64(sn), 1))
			var lastNext uint32
			for round := 0; ; round++ {
				finished := false
				select {
				case <-done:
					finished = true
				default:
				}
				msgs, err := f.Sync()
				if err != nil {
					t.Error(who, err)
					return
				}
				book.see(who, msgs)
				if n := f.UIDNext(); n < lastNext {
					t.Errorf("%s: UIDNext went from %d to %d", who, lastNext, n)
				} else {
					lastNext = n
				}
				if len(msgs) > 0 {
					m := msgs[rng.IntN(len(msgs))]
					if err := f.SetFlags(m.UID, []string{`\Seen`, `\Flagged`}[:rng.IntN(3)]); err != nil && err != ErrNoMessage {
						t.Error(who, err)
					}
					m = msgs[rng.IntN(len(msgs))]
					if fh, err := f.Open(m.UID); err == nil {
						b, _ := io.ReadAll(fh)
						fh.Close()
						mu.Lock()
						want, ok := bodies[m.Key]
						mu.Unlock()
						if ok && string(b) != want {
							t.Errorf("%s: UID %d holds %q, want %q", who, m.UID, b, want)
						}
					} else if err != ErrNoMessage {
						t.Error(who, err)
					}
					if rng.IntN(4) == 0 {
						m = msgs[rng.IntN(len(msgs))]
						mu.Lock()
						expunged[m.Key] = true
						mu.Unlock()
						if err := f.Expunge([]uint32{m.UID}); err != nil {
							t.Error(who, err)
						}
					}
				}
				if sn == 0 && round%3 == 0 {
					uid, err := f.Append(bytes.NewBufferString("appended"), []string{`\Seen`}, time.Time{})
					if err != nil {
						t.Error(who, err)
					} else {
						mu.Lock()
						appended[uid] = true
						mu.Unlock()
					}
				}
				if finished {
					return
				}
			}
		}()
	}
	swg.Wait()
	book.mu.Lock()
	for _, e := range book.errs {
		t.Error(e)
	}
	book.mu.Unlock()
	if t.Failed() {
		t.FailNow()
	}

	f := mustFolder(t, stores[len(stores)-1], user, "INBOX")
	final := mustSync(t, f)
	book.see("final", final)
	have := map[string]bool{}
	haveUID := map[uint32]bool{}
	for _, m := range final {
		have[m.Key] = true
		haveUID[m.UID] = true
		if m.UID >= f.UIDNext() {
			t.Errorf("UID %d not below UIDNEXT %d", m.UID, f.UIDNext())
		}
	}
	for k := range bodies {
		if !have[k] && !expunged[k] {
			t.Errorf("delivered %s lost", k)
		}
		if have[k] && expunged[k] {
			t.Errorf("expunged %s still there", k)
		}
	}
	for uid := range appended {
		if k := book.byUID[uid]; !haveUID[uid] && !expunged[k] {
			t.Errorf("appended UID %d lost", uid)
		}
	}
	if len(bodies) != deliverers*perDeliverer {
		t.Fatalf("%d delivered", len(bodies))
	}

	// The UID list on disk says the same after reopening the Store.
	s2, err := Open(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := mustFolder(t, s2, user, "INBOX")
	if g.UIDValidity() != f.UIDValidity() || g.UIDNext() != f.UIDNext() {
		t.Fatalf("reopened: UIDVALIDITY %d UIDNEXT %d, was %d %d", g.UIDValidity(), g.UIDNext(), f.UIDValidity(), f.UIDNext())
	}
	again := mustSync(t, g)
	if len(again) != len(final) {
		t.Fatalf("reopened: %d messages, was %d", len(again), len(final))
	}
	for i := range again {
		if again[i].UID != final[i].UID || again[i].Key != final[i].Key {
			t.Fatalf("reopened: %+v, was %+v", again[i], final[i])
		}
	}
}
