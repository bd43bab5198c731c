package queue

import (
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// An acknowledged message survives a restart of the queue on the same
// directory; what no envelope commits is removed at the start; the
// resumed message is then delivered and its files removed.
func TestEnqueueSurvivesRestart(t *testing.T) {
	r := startRelay(t, func(string, []string, int) error { return nil })
	cfg := testConfig(t, r.addr)
	q := openQueue(t, cfg)
	id := enqueue(t, q, "alice@example.com", []string{"bob@example.com"}, testMessage)

	// A crash in the middle of another enqueue: its message file is
	// there, its envelope only under the temporary name.
	os.WriteFile(filepath.Join(cfg.Dir, "ORPHAN.msg"), []byte("never acknowledged"), 0o600)
	os.WriteFile(filepath.Join(cfg.Dir, "HALF.msg"), []byte("half"), 0o600)
	os.WriteFile(filepath.Join(cfg.Dir, "HALF.env.tmp"), []byte("{"), 0o600)

	q2 := openQueue(t, cfg) // the first one is never run: as if the process had died
	if got := spoolFiles(t, cfg.Dir); !slices.Equal(got, []string{id + ".env", id + ".msg"}) {
		t.Fatalf("spool after restart: %v", got)
	}
	if q2.Len() != 1 {
		t.Fatalf("%d messages resumed, want 1", q2.Len())
	}
	run(t, q2)
	m := r.next(t)
	if m.from != "alice@example.com" || !slices.Equal(m.to, []string{"bob@example.com"}) || m.data != testMessage {
		t.Fatalf("relay got %+v", m)
	}
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, cfg.Dir)) == 0 && q2.Len() == 0 })
}

// recordingOps records the file-system calls of the commit protocol.
type recordingOps struct {
	osOps
	mu     sync.Mutex
	events []string
}

func (r *recordingOps) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

func (r *recordingOps) syncFile(f *os.File) error {
	r.add("fsync " + filepath.Base(f.Name()))
	return r.osOps.syncFile(f)
}

func (r *recordingOps) syncDir(dir string) error {
	r.add("fsync dir")
	return r.osOps.syncDir(dir)
}

func (r *recordingOps) rename(oldname, newname string) error {
	r.add("rename " + filepath.Base(oldname) + " " + filepath.Base(newname))
	return r.osOps.rename(oldname, newname)
}

// Enqueue returns only after the commit protocol: the message synced,
// the envelope synced under a temporary name, renamed into place, and the
// directory synced.
func TestEnqueueCommitOrder(t *testing.T) {
	rec := &recordingOps{}
	q, err := open(testConfig(t, "127.0.0.1:1"), rec)
	if err != nil {
		t.Fatal(err)
	}
	rec.events = nil
	id := enqueue(t, q, "alice@example.com", []string{"bob@example.com"}, testMessage)
	rec.add("acknowledged")
	want := []string{"fsync " + id + ".msg", "fsync " + id + ".env.tmp", "rename " + id + ".env.tmp " + id + ".env", "fsync dir", "acknowledged"}
	if !slices.Equal(rec.events, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(rec.events, "\n"), strings.Join(want, "\n"))
	}
}

// One attempt: 2xx delivered, 5xx failed (and bounced), 4xx kept for
// later, and the recipient of another backend (452 4.5.3) sent at once in
// a second transaction, not after the back-off.
func TestDeliveryOutcomes(t *testing.T) {
	// Like the tohost proxy: a transaction's recipients share the domain
	// of its first.
	r := startRelay(t, func(rcpt string, taken []string, _ int) error {
		switch {
		case strings.HasPrefix(rcpt, "bad@"):
			return errPerm
		case strings.HasPrefix(rcpt, "later@"):
			return errTemp
		case len(taken) > 0 && domain(taken[0]) != domain(rcpt):
			return errSplit
		}
		return nil
	})
	cfg := testConfig(t, r.addr)
	q := openQueue(t, cfg)
	rcpts := []string{"ok@one.test", "bad@one.test", "other@two.test", "later@one.test", "ok2@one.test", "third@three.test"}
	id := enqueue(t, q, "alice@example.com", rcpts, testMessage)
	run(t, q)

	byTo := map[string]received{}
	for range 4 { // one.test, two.test, three.test, the bounce
		m := r.next(t)
		byTo[strings.Join(m.to, ",")] = m
	}
	for _, to := range []string{"ok@one.test,ok2@one.test", "other@two.test", "third@three.test"} {
		if m, ok := byTo[to]; !ok || m.data != testMessage || m.from != "alice@example.com" {
			t.Fatalf("no transaction to %s: %v", to, byTo)
		}
	}
	bounce, ok := byTo["alice@example.com"]
	if !ok || bounce.from != "" {
		t.Fatalf("no bounce to the sender from <>: %v", byTo)
	}
	report := parseDSN(t, bounce.data)
	if !strings.Contains(report, "Final-Recipient: rfc822; bad@one.test") || strings.Contains(report, "later@") ||
		!strings.Contains(report, "Status: 5.1.1") || !strings.Contains(report, "Diagnostic-Code: smtp; 550 5.1.1 No such user here") {
		t.Fatalf("delivery status:\n%s", report)
	}

	// The deferred recipient waits for its back-off (an hour), the others are done.
	waitFor(t, "the envelope to record the attempt", func() bool {
		env, err := q.spool.readEnvelope(id)
		return err == nil && env.Attempts == 1
	})
	env, _ := q.spool.readEnvelope(id)
	for _, rc := range env.Recipients {
		want := map[string]string{"bad": Failed, "later": Pending}[strings.Split(rc.Addr, "@")[0]]
		if want == "" {
			want = Delivered
		}
		if rc.Status != want {
			t.Errorf("%s: %s (%s), want %s", rc.Addr, rc.Status, rc.Reply, want)
		}
	}
	if n := r.timesAsked("later@one.test"); n != 1 {
		t.Errorf("later@one.test asked %d times, want 1", n)
	}
	if !env.NextAttempt.After(time.Now().Add(30 * time.Minute)) {
		t.Errorf("next attempt %v, want after the back-off", env.NextAttempt)
	}
}

func domain(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return d
}

// A temporary failure is retried after the back-off, until it succeeds.
func TestRetryThenDelivered(t *testing.T) {
	r := startRelay(t, func(_ string, _ []string, asked int) error {
		if asked < 2 {
			return errTemp
		}
		return nil
	})
	cfg := testConfig(t, r.addr)
	cfg.Retry, cfg.MaxRetry = time.Millisecond, 2*time.Millisecond
	q := openQueue(t, cfg)
	enqueue(t, q, "alice@example.com", []string{"bob@example.com"}, testMessage)
	run(t, q)
	if m := r.next(t); !slices.Equal(m.to, []string{"bob@example.com"}) {
		t.Fatalf("relay got %+v", m)
	}
	if n := r.timesAsked("bob@example.com"); n != 3 {
		t.Fatalf("asked %d times, want 3", n)
	}
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, cfg.Dir)) == 0 })
}

func TestAddressLiteral(t *testing.T) {
	for in, want := range map[string]string{"mx.test": "mx.test", "127.0.0.2": "[127.0.0.2]", "::1": "[IPv6:::1]"} {
		if got := addressLiteral(in); got != want {
			t.Errorf("addressLiteral(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	q := &Queue{cfg: Config{Retry: time.Minute, MaxRetry: time.Hour}}
	for attempts, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute, 7: time.Hour, 100: time.Hour} {
		if got := q.backoff(attempts); got != want {
			t.Errorf("backoff(%d) = %v, want %v", attempts, got, want)
		}
	}
}

// A recipient still pending when the lifetime is over fails, and the
// sender gets a delivery status notification naming it.
func TestLifetimeExpiryBounces(t *testing.T) {
	r := startRelay(t, func(rcpt string, _ []string, _ int) error {
		if rcpt == "slow@example.net" {
			return errTemp
		}
		return nil
	})
	cfg := testConfig(t, r.addr)
	cfg.Lifetime = time.Nanosecond // over at the first attempt
	q := openQueue(t, cfg)
	id := enqueue(t, q, "alice@example.com", []string{"slow@example.net"}, testMessage)
	run(t, q)
	m := r.next(t)
	if m.from != "" || !slices.Equal(m.to, []string{"alice@example.com"}) {
		t.Fatalf("want a bounce from <> to the sender, got %+v", m)
	}
	report := parseDSN(t, m.data)
	for _, want := range []string{"Reporting-MTA: dns; mx.test", "Final-Recipient: rfc822; slow@example.net",
		"Action: failed", "Status: 4.4.7", "Diagnostic-Code: smtp; 451 4.3.0 Try again later", "X-Queue-ID: " + id} {
		if !strings.Contains(report, want) {
			t.Fatalf("delivery status lacks %q:\n%s", want, report)
		}
	}
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, cfg.Dir)) == 0 })
}

// parseDSN checks the structure of a bounce (RFC 6522 multipart/report,
// RFC 3464 message/delivery-status, the original header returned) and
// returns the delivery-status part.
func parseDSN(t *testing.T, data string) string {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Auto-Submitted") != "auto-replied" || !strings.HasPrefix(msg.Header.Get("From"), "Mail Delivery System") {
		t.Fatalf("bounce header: %v", msg.Header)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("bounce Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var status, headers string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		ct := p.Header.Get("Content-Type")
		types = append(types, strings.Split(ct, ";")[0])
		switch {
		case ct == "message/delivery-status":
			status = string(b)
		case ct == "text/rfc822-headers":
			headers = string(b)
		}
	}
	if !slices.Equal(types, []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}) {
		t.Fatalf("bounce parts: %v", types)
	}
	if !strings.Contains(headers, "Subject: queued") || strings.Contains(headers, "hello") {
		t.Fatalf("original header returned:\n%s", headers)
	}
	return status
}

// A message from the null sender that fails is dropped, never bounced.
func TestNullSenderNotBounced(t *testing.T) {
	r := startRelay(t, func(string, []string, int) error { return errPerm })
	cfg := testConfig(t, r.addr)
	q := openQueue(t, cfg)
	enqueue(t, q, "", []string{"gone@example.net"}, testMessage)
	run(t, q)
	// A bounce would be queued before the message is removed: once the
	// queue is empty, none was.
	waitFor(t, "the queue to empty", func() bool { return q.Len() == 0 })
	if files := spoolFiles(t, cfg.Dir); len(files) != 0 {
		t.Fatalf("spool: %v", files)
	}
	if n := r.timesAsked("gone@example.net"); n != 1 {
		t.Fatalf("asked %d times", n)
	}
	select {
	case m := <-r.got:
		t.Fatalf("relay got %+v", m)
	default:
	}
}

// Messages enqueued from many goroutines while the runner works are each
// delivered once.
func TestConcurrentEnqueue(t *testing.T) {
	r := startRelay(t, func(string, []string, int) error { return nil })
	cfg := testConfig(t, r.addr)
	q := openQueue(t, cfg)
	run(t, q)
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := NewID()
				msg := fmt.Sprintf("Subject: %d-%d\r\n\r\nbody\r\n", w, i)
				if err := q.Enqueue(id, "alice@example.com", []string{"bob@example.com"}, strings.NewReader(msg)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for range writers * each {
		m := r.next(t)
		if seen[m.data] {
			t.Fatalf("delivered twice: %q", m.data)
		}
		seen[m.data] = true
	}
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, cfg.Dir)) == 0 })
}

// Stopping the runner while the relay is down keeps the message queued;
// a new queue on the directory delivers it once the relay is up.
func TestStopKeepsMessages(t *testing.T) {
	cfg := testConfig(t, "127.0.0.1:1") // nothing listens there
	q := openQueue(t, cfg)
	id := enqueue(t, q, "alice@example.com", []string{"bob@example.com"}, testMessage)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	waitFor(t, "an attempt", func() bool {
		env, err := q.spool.readEnvelope(id)
		return err == nil && env.Attempts > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, func(string, []string, int) error { return nil })
	cfg.Relay = r.addr
	cfg.Retry = time.Millisecond
	q2 := openQueue(t, cfg)
	// The envelope's next attempt is the back-off of the first run.
	q2.items[id].env.NextAttempt = time.Now()
	run(t, q2)
	if m := r.next(t); m.data != testMessage {
		t.Fatalf("relay got %+v", m)
	}
}

// TestUnreadableEnvelopesKept: envelopes damaged or edited on disk (cut
// short, another message's, without their message, without recipients,
// with an unknown status or a line break in an address) are reported and
// left as they are, with their messages; the good message beside them is
// delivered.
func TestUnreadableEnvelopesKept(t *testing.T) {
	r := startRelay(t, func(string, []string, int) error { return nil })
	cfg := testConfig(t, r.addr)
	q := openQueue(t, cfg)
	id := enqueue(t, q, "alice@example.com", []string{"bob@example.com"}, testMessage)
	bad := map[string]string{
		"CUT":      `{"id":"CUT","from":"a@x","recipients":[{"addr":"b@x","sta`,
		"OTHER":    `{"id":"SOMEONE","from":"a@x","recipients":[{"addr":"b@x","status":"pending"}]}`,
		"NOBODY":   `{"id":"NOBODY","from":"a@x","recipients":[]}`,
		"STATUS":   `{"id":"STATUS","from":"a@x","recipients":[{"addr":"b@x","status":"maybe"}]}`,
		"INJECTED": `{"id":"INJECTED","from":"a@x","recipients":[{"addr":"b@x>\r\nRCPT TO:<c@x","status":"pending"}]}`,
	}
	var want []string
	for name, env := range bad {
		os.WriteFile(filepath.Join(cfg.Dir, name+".env"), []byte(env), 0o600)
		os.WriteFile(filepath.Join(cfg.Dir, name+".msg"), []byte(testMessage), 0o600)
		want = append(want, name+".env", name+".msg")
	}
	os.WriteFile(filepath.Join(cfg.Dir, "LONELY.env"), []byte(`{"id":"LONELY","from":"a@x","recipients":[{"addr":"b@x","status":"pending"}]}`), 0o600)
	want = append(want, "LONELY.env")
	slices.Sort(want)

	q2 := openQueue(t, cfg)
	if q2.Len() != 1 {
		t.Fatalf("%d messages resumed, want only the good one", q2.Len())
	}
	run(t, q2)
	if m := r.next(t); !slices.Equal(m.to, []string{"bob@example.com"}) {
		t.Fatalf("relay got %+v", m)
	}
	waitFor(t, "the good message to leave", func() bool { return !slices.Contains(spoolFiles(t, cfg.Dir), id+".env") })
	if got := spoolFiles(t, cfg.Dir); !slices.Equal(got, want) {
		t.Fatalf("spool %v, want the damaged envelopes and their messages kept: %v", got, want)
	}
}
