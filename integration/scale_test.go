package integration

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/tohost/tohost/directory/password"
)

// scaleUsers is the population of TestScaleImportAndLogin.
const scaleUsers = 100_000

// scaleUser is user i of that population: its name, password and backend
// (the two backends alternate in runs of three, so neither parity nor
// domain decides it).
func scaleUser(i int) (name, pass, host string) {
	host = "127.0.0.2"
	if i/3%2 == 1 {
		host = "127.0.0.3"
	}
	return fmt.Sprintf("scale%06d@domain%02d.example", i, i%97), fmt.Sprintf("pw-%06d-%x", i, i*7919), host
}

// writeScaleCSV writes the whole population as CSV with {SSHA} hashes
// computed here (a salted SHA-1 costs microseconds, so neither the file
// nor the import spends time hashing) and returns its path.
func writeScaleCSV(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("user,password_hash,tohost,quota\n")
	for i := range scaleUsers {
		name, pass, host := scaleUser(i)
		h, err := password.Hash(password.SchemeSSHA, pass)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "%s,%s,%s,%d\n", name, h, host, 10<<20)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// scaleSeed is TOHOST_SCALE_SEED when set (to replay a failure), else the
// time.
func scaleSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("TOHOST_SCALE_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TOHOST_SCALE_SEED: %v", err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// dialFrom connects to addr from the loopback address from (empty: any),
// so that a refused login's penalty falls on an address of its own.
func dialFrom(from, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return c, nil
}

// imapInbox logs in at addr with go-imap's client, SELECTs INBOX and
// returns the subjects of its messages.
func imapInbox(addr, from, user, pass string) ([]string, error) {
	nc, err := dialFrom(from, addr)
	if err != nil {
		return nil, err
	}
	c := imapclient.New(nc, nil)
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		return nil, fmt.Errorf("LOGIN: %w", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("SELECT: %w", err)
	}
	var subjects []string
	if sel.NumMessages > 0 {
		msgs, err := c.Fetch(imap.SeqSetNum(1, sel.NumMessages), &imap.FetchOptions{Envelope: true}).Collect()
		if err != nil {
			return nil, fmt.Errorf("FETCH: %w", err)
		}
		for _, m := range msgs {
			subjects = append(subjects, m.Envelope.Subject)
		}
	}
	if err := c.Logout().Wait(); err != nil {
		return nil, fmt.Errorf("LOGOUT: %w", err)
	}
	return subjects, nil
}

// pop3Stat logs in at addr with USER/PASS and returns the reply to STAT,
// or the first reply that is not +OK.
func pop3Stat(addr, from, user, pass string) (string, error) {
	nc, err := dialFrom(from, addr)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	for _, cmd := range []string{"", "USER " + user, "PASS " + pass, "STAT", "QUIT"} {
		if cmd != "" {
			if _, err := fmt.Fprintf(nc, "%s\r\n", cmd); err != nil {
				return "", err
			}
		}
		l, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("%q: %w", cmd, err)
		}
		l = strings.TrimRight(l, "\r\n")
		if !strings.HasPrefix(l, "+OK") || cmd == "STAT" {
			return l, nil
		}
	}
	return "", errors.New("no STAT reply")
}

// smtpDeliver sends one message with subject to rcpt through an SMTP
// address and returns the first reply that is not the expected one, or ""
// when every step got it.
func smtpDeliver(addr, rcpt, subject string) (string, error) {
	nc, err := dialFrom("", addr)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	read := func() (string, error) { // the last line of a reply
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			if len(l) < 4 || l[3] != '-' {
				return strings.TrimRight(l, "\r\n"), nil
			}
		}
	}
	for _, step := range []struct{ send, want string }{
		{"", "220"}, {"EHLO mta.example.org", "250"}, {"MAIL FROM:<sender@example.org>", "250"},
		{"RCPT TO:<" + rcpt + ">", "250"}, {"DATA", "354"},
		{"From: sender@example.org\r\nTo: " + rcpt + "\r\nSubject: " + subject + "\r\n\r\nfor " + rcpt + "\r\n.", "250"},
		{"QUIT", "221"},
	} {
		if step.send != "" {
			if _, err := fmt.Fprintf(nc, "%s\r\n", step.send); err != nil {
				return "", err
			}
		}
		l, err := read()
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(l, step.want) {
			return l, nil
		}
	}
	return "", nil
}

// TestScaleImportAndLogin: 100,000 users with {SSHA} hashes, spread over
// two backends, are bulk-imported into the cluster's PostgreSQL and Redis
// directory while it runs; the import must report every one imported.
// Then a random sample (seed logged; TOHOST_SCALE_SEED replays it), with
// the file's first and last users, each gets one message through a
// proxy's SMTP, which must land in their Maildir on their own backend and
// nowhere else, and logs in through the proxies over IMAP (go-imap's
// client: INBOX holds exactly that message) and POP3 (STAT: one message).
// Wrong passwords of sampled users and a user the file did not hold are
// refused over both protocols.
func TestScaleImportAndLogin(t *testing.T) {
	const sample, workers = 200, 8
	c := startE2ECluster(t)
	csv := writeScaleCSV(t)

	start := time.Now()
	code, out, errOut := tohost(t, "import", "--postgres", c.postgres, "--redis", c.redis, "--redis-prefix", c.redisPrefix,
		"--progress", "none", csv)
	t.Logf("import of %d users: %v", scaleUsers, time.Since(start).Round(time.Millisecond))
	want := "read 100,000, imported 100,000, updated 0, unchanged 0, skipped 0, rejected 0"
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("import: exit %d, want %q\nstdout: %s\nstderr: %s", code, want, out, errOut)
	}

	seed := scaleSeed(t)
	t.Logf("sample seed %d (TOHOST_SCALE_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	picked := map[int]bool{0: true, scaleUsers - 1: true}
	for len(picked) < sample {
		picked[rng.IntN(scaleUsers)] = true
	}
	var idx []int
	for i := range picked {
		idx = append(idx, i)
	}
	rng.Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
	backend := map[string]*e2eBackend{}
	for _, b := range c.backends {
		backend[b.host] = b
	}

	start = time.Now()
	var (
		mu     sync.Mutex
		errs   []string
		onHost = map[string]int{}
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, fmt.Sprintf(format, args...))
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				i := idx[k]
				user, pass, host := scaleUser(i)
				subject := fmt.Sprintf("scale %d", i)
				in, read := c.proxies[k%2], c.proxies[(k+1)%2]
				if l, err := smtpDeliver(in.smtp, user, subject); err != nil || l != "" {
					fail("user %d %s: SMTP through %s: %q %v", i, user, in.name, l, err)
					continue
				}
				for _, b := range c.backends {
					n := len(messages(t, b.mailDir, user))
					if want := map[bool]int{true: 1, false: 0}[b.host == host]; n != want {
						fail("user %d %s (tohost %s): %d messages on %s, want %d", i, user, host, n, b.host, want)
					}
				}
				subjects, err := imapInbox(read.imap, "", user, pass)
				if err != nil || len(subjects) != 1 || subjects[0] != subject {
					fail("user %d %s: IMAP through %s: INBOX %q, want [%q]; %v", i, user, read.name, subjects, subject, err)
				}
				if l, err := pop3Stat(in.pop3, "", user, pass); err != nil || !strings.HasPrefix(l, "+OK 1 ") {
					fail("user %d %s: POP3 through %s: STAT %q, want one message; %v", i, user, in.name, l, err)
				}
				mu.Lock()
				onHost[host]++
				mu.Unlock()
			}
		}()
	}
	for k := range idx {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("seed %d: %d failures, the first:\n%s", seed, len(errs), strings.Join(errs[:min(len(errs), 20)], "\n"))
	}
	t.Logf("%d users delivered to and logged in over IMAP and POP3 in %v: %v", len(idx), time.Since(start).Round(time.Millisecond), onHost)
	if onHost["127.0.0.2"] == 0 || onHost["127.0.0.3"] == 0 {
		t.Fatalf("the sample reached one backend only: %v", onHost)
	}

	// Refusals, each from a loopback address of its own so the proxy's
	// per-address penalty delays no other login.
	unknown, unknownPass, _ := scaleUser(scaleUsers)
	refused := [][2]string{{unknown, unknownPass}}
	for _, i := range idx[:4] {
		user, pass, _ := scaleUser(i)
		refused = append(refused, [2]string{user, pass + "x"}, [2]string{user, strings.ToUpper(pass)})
	}
	for k, u := range refused {
		p := c.proxies[k%2]
		_, err := imapInbox(p.imap, fmt.Sprintf("127.0.1.%d", k+1), u[0], u[1])
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("IMAP login %s with a wrong password through %s: %v, want NO [AUTHENTICATIONFAILED]", u[0], p.name, err)
		}
		if l, err := pop3Stat(p.pop3, fmt.Sprintf("127.0.2.%d", k+1), u[0], u[1]); err != nil || !strings.HasPrefix(l, "-ERR [AUTH]") {
			t.Errorf("POP3 login %s with a wrong password through %s: %q %v, want -ERR [AUTH]", u[0], p.name, l, err)
		}
	}
}
