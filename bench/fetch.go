package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ModeIMAPFetch fetches a whole folder over IMAP again and again
// (RunFetches).
const ModeIMAPFetch = "imap-fetch"

// The commands of RunFetches (Config.Fetch).
const (
	FetchEnvelope = "envelope" // FETCH 1:N (FLAGS ENVELOPE)
	FetchBody     = "body"     // FETCH 1:N BODY.PEEK[]
	FetchBoth     = "both"     // the two in turn
)

// FetchResult is the outcome of RunFetches for one command.
type FetchResult struct {
	Fetch     string // FetchEnvelope or FetchBody
	Conns     int
	Messages  int   // N: messages of each FETCH
	Fetches   int64 // FETCH commands answered (or failed)
	Errors    int64
	Bytes     int64         // bytes of the answers, literals included
	Elapsed   time.Duration // the run's wall time
	Busy      time.Duration // time in this command, summed over the connections
	RPS       float64       // fetches/s
	MsgsPS    float64       // messages/s: RPS * Messages
	P50, P99  time.Duration
	Max       time.Duration
	ClientCPU float64
}

func (r FetchResult) String() string {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return fmt.Sprintf("mode=%s fetch=%s c=%d messages=%d fetches=%d errors=%d elapsed_s=%.2f rps=%.2f msgs_s=%.0f mb_s=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f client_cpu=%.0f%%",
		ModeIMAPFetch, r.Fetch, r.Conns, r.Messages, r.Fetches, r.Errors, r.Elapsed.Seconds(), r.RPS, r.MsgsPS,
		r.RPS*float64(r.Bytes)/float64(max(r.Fetches, 1))/1e6, ms(r.P50), ms(r.P99), ms(r.Max), r.ClientCPU)
}

// RunFetches runs cfg.Conns IMAP connections to cfg.Addr. Connection k logs
// in as user First + k%Users of the population, SELECTs INBOX, which must
// hold at least cfg.Messages (N) messages, and then repeats, until
// cfg.Duration or cfg.Count (FETCH commands in all) is reached, the
// command cfg.Fetch: FETCH 1:N (FLAGS ENVELOPE), FETCH 1:N BODY.PEEK[], or
// the one then the other (FetchBoth). Each FETCH must get exactly N
// untagged FETCH responses, one for each of 1..N, and a tagged OK; anything
// else, or a transport error, is an error (the connection then starts
// again). It returns one FetchResult per command run. With one command,
// fetches/s is the count over the run's wall time; with both, each
// command's count over the time spent in it (summed over the connections,
// divided by their number), so the two figures are each command's own rate.
func RunFetches(ctx context.Context, cfg Config) ([]FetchResult, error) {
	if cfg.Conns == 0 {
		cfg.Conns = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Fetch == "" {
		cfg.Fetch = FetchBoth
	}
	var cmds []string
	switch cfg.Fetch {
	case FetchEnvelope, FetchBody:
		cmds = []string{cfg.Fetch}
	case FetchBoth:
		cmds = []string{FetchEnvelope, FetchBody}
	default:
		return nil, fmt.Errorf("bench: --fetch %q: want %s, %s or %s", cfg.Fetch, FetchEnvelope, FetchBody, FetchBoth)
	}
	switch {
	case cfg.Addr == "":
		return nil, errors.New("bench: no address")
	case cfg.Users < 1 || cfg.First < 0 || cfg.Conns < 1 || cfg.Messages < 1:
		return nil, errors.New("bench: need conns >= 1, users >= 1, first >= 0, messages >= 1")
	case cfg.Duration == 0 && cfg.Count == 0:
		return nil, errors.New("bench: need a duration or a count (or both)")
	}
	r := &runner{cfg: cfg, base: time.Now()}
	if cfg.Duration > 0 {
		r.end = cfg.Duration
	}
	type stats struct {
		h     histogram
		busy  time.Duration
		bytes int64
	}
	per := make([][]stats, cfg.Conns) // [conn][command]
	var errs [2]atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	for k := range cfg.Conns {
		per[k] = make([]stats, len(cmds))
		wg.Go(func() {
			f := &fetcher{cfg: cfg, user: cfg.First + k%cfg.Users}
			defer f.close()
			for n := 0; ctx.Err() == nil && (r.end == 0 || r.now() < r.end); n++ {
				if cfg.Count > 0 && r.issued.Add(1) > int64(cfg.Count) {
					return
				}
				j := n % len(cmds)
				t0 := r.now()
				nb, err := f.fetch(ctx, cmds[j], n)
				d := r.now() - t0
				st := &per[k][j]
				st.h.record(d)
				st.busy += d
				st.bytes += nb
				if err != nil {
					errs[j].Add(1)
					f.close()
					r.report(func() string {
						return fmt.Sprintf("conn %d (%s): fetch %s: %v", k, Login(f.user), cmds[j], err)
					})
				}
			}
		})
	}
	wg.Wait()
	elapsed := r.now()
	cpu := cpuTime() - cpu0
	var out []FetchResult
	var failed int64
	for j, c := range cmds {
		var h histogram
		res := FetchResult{Fetch: c, Conns: cfg.Conns, Messages: cfg.Messages, Elapsed: elapsed, Errors: errs[j].Load()}
		for k := range per {
			h.merge(&per[k][j].h)
			res.Busy += per[k][j].busy
			res.Bytes += per[k][j].bytes
		}
		res.Fetches = int64(h.n)
		span := elapsed
		if len(cmds) > 1 {
			span = res.Busy / time.Duration(cfg.Conns)
		}
		if s := span.Seconds(); s > 0 {
			res.RPS = float64(res.Fetches-res.Errors) / s
			res.MsgsPS = res.RPS * float64(cfg.Messages)
		}
		if s := elapsed.Seconds(); s > 0 {
			res.ClientCPU = cpu.Seconds() / s * 100
		}
		res.P50, res.P99 = h.quantile(0.50), h.quantile(0.99)
		res.Max = time.Duration(h.max)
		failed += res.Errors
		out = append(out, res)
	}
	if failed > 0 {
		r.mu.Lock()
		first := r.shown[0]
		r.mu.Unlock()
		return out, fmt.Errorf("bench: %d FETCH commands failed; first: %s", failed, first)
	}
	return out, ctx.Err()
}

// fetcher is one IMAP connection of RunFetches, logged in and with INBOX
// selected once open.
type fetcher struct {
	cfg  Config
	user int
	c    net.Conn
	rd   *bufio.Reader
}

func (f *fetcher) close() {
	if f.c != nil {
		f.c.Close()
		f.c = nil
	}
}

// open connects, logs in and selects INBOX, which must hold at least
// cfg.Messages messages.
func (f *fetcher) open(ctx context.Context) error {
	d := net.Dialer{Timeout: f.cfg.Timeout}
	c, err := d.DialContext(ctx, "tcp", f.cfg.Addr)
	if err != nil {
		return err
	}
	f.c, f.rd = c, bufio.NewReaderSize(c, 64<<10)
	c.SetDeadline(time.Now().Add(f.cfg.Timeout))
	l, err := f.line()
	if err != nil || !strings.HasPrefix(l, "* OK") {
		return fmt.Errorf("greeting %q: %v", l, err)
	}
	if _, err := io.WriteString(c, `l LOGIN "`+Login(f.user)+`" "`+Password(f.user)+`"`+"\r\n"); err != nil {
		return err
	}
	if l, _, err := f.until("l", nil); err != nil || !strings.HasPrefix(l, "l OK") {
		return fmt.Errorf("login answered %q: %v", l, err)
	}
	if _, err := io.WriteString(c, "s SELECT INBOX\r\n"); err != nil {
		return err
	}
	exists := -1
	l, _, err = f.until("s", func(resp string) {
		if p := strings.Fields(resp); len(p) == 3 && p[0] == "*" && strings.EqualFold(p[2], "EXISTS") {
			exists, _ = strconv.Atoi(p[1])
		}
	})
	if err != nil || !strings.HasPrefix(l, "s OK") {
		return fmt.Errorf("SELECT INBOX answered %q: %v", l, err)
	}
	if exists < f.cfg.Messages {
		return fmt.Errorf("INBOX holds %d messages, want at least %d", exists, f.cfg.Messages)
	}
	return nil
}

// fetch sends FETCH command what (its n-th) and checks the answer; it
// returns the bytes read.
func (f *fetcher) fetch(ctx context.Context, what string, n int) (int64, error) {
	if f.c == nil {
		if err := f.open(ctx); err != nil {
			return 0, err
		}
	}
	f.c.SetDeadline(time.Now().Add(f.cfg.Timeout))
	items := "(FLAGS ENVELOPE)"
	if what == FetchBody {
		items = "BODY.PEEK[]"
	}
	tag := "f" + strconv.Itoa(n)
	if _, err := fmt.Fprintf(f.c, "%s FETCH 1:%d %s\r\n", tag, f.cfg.Messages, items); err != nil {
		return 0, err
	}
	seen := make([]bool, f.cfg.Messages+1)
	got, bad := 0, ""
	l, nb, err := f.until(tag, func(resp string) {
		p := strings.SplitN(resp, " ", 4)
		if len(p) < 4 || p[0] != "*" || !strings.EqualFold(p[2], "FETCH") {
			return
		}
		seq, err := strconv.Atoi(p[1])
		switch {
		case err != nil || seq < 1 || seq > f.cfg.Messages:
			bad = "a FETCH response for message " + p[1]
		case seen[seq]:
			bad = "two FETCH responses for message " + p[1]
		default:
			seen[seq] = true
			got++
		}
	})
	switch {
	case err != nil:
		return nb, err
	case !strings.HasPrefix(l, tag+" OK"):
		return nb, fmt.Errorf("answered %q", l)
	case bad != "":
		return nb, errors.New(bad)
	case got != f.cfg.Messages:
		return nb, fmt.Errorf("%d FETCH responses, want %d", got, f.cfg.Messages)
	}
	return nb, nil
}

// line reads one line, without its CRLF.
func (f *fetcher) line() (string, error) {
	l, err := f.rd.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// until reads responses until the tagged one for tag, which it returns,
// with the bytes read. Each untagged response goes to each (when not nil)
// with its literals left out: a line ending in {n} is followed by n bytes,
// which are skipped, and the response goes on after them.
func (f *fetcher) until(tag string, each func(string)) (string, int64, error) {
	var nb int64
	var resp strings.Builder
	for {
		l, err := f.rd.ReadSlice('\n')
		nb += int64(len(l))
		if err == bufio.ErrBufferFull {
			return "", nb, errors.New("a line longer than 64 KiB")
		}
		if err != nil {
			return "", nb, err
		}
		s := strings.TrimRight(string(l), "\r\n")
		if n, ok := literal(s); ok {
			if resp.Len() < 256 { // enough for "* n FETCH"
				resp.WriteString(s)
			}
			m, err := f.rd.Discard(n)
			nb += int64(m)
			if err != nil {
				return "", nb, err
			}
			continue
		}
		if resp.Len() < 256 {
			resp.WriteString(s)
		}
		r := resp.String()
		resp.Reset()
		if strings.HasPrefix(r, tag+" ") {
			return r, nb, nil
		}
		if each != nil && strings.HasPrefix(r, "* ") {
			each(r)
		}
	}
}

// literal reports whether line ends with a literal's announcement {n} (or
// {n+}), and n.
func literal(line string) (int, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(line[i+1:len(line)-1], "+"))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
