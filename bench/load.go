// Package bench is tohost's checked load generator for the authent line
// protocol (docs/protocol.md), and the bare echo server it is compared against.
//
// Run is a closed loop: Config.Conns connections, each keeping Config.Depth
// requests in flight (1 = no pipelining), for users drawn from the
// deterministic population of users.go. Every answer is verified against
// that population, so a server that is fast but wrong is caught: a wrong
// answer, a -DEAD, a transport error or a timeout counts as an error. One
// watchdog goroutine enforces the per-request timeout for all connections by
// closing a connection whose oldest request is overdue, instead of a timer
// per request. Latencies go into per-connection log-linear histograms
// (HdrHistogram-style, under 1% error), merged at the end.
//
// Its method and its summary line are those of the reference load generator
// (loadgen) that tohost's baseline figures were measured with: loadgen's
// tcpauth lookup and check figures compare directly with depth 1 here.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Modes of Run.
const (
	// ModeLookup sends `lookup U` and expects `+OK U config 0 ...`, or
	// `-ERR U does not exist` for a miss (an unknown user).
	ModeLookup = "lookup"
	// ModeCheck sends `check U P` and expects `+OK U config 0 ...`, or
	// `-ERR U password wrong or not a valid user` for a miss (a wrong password).
	ModeCheck = "check"
	// ModeSet sends `set U {SSHA}... tohost=".." quota=".." name=".."` for
	// each user First..First+Users-1 exactly once and expects
	// `+OK U added to database`: it loads a directory and measures durable
	// writes per second.
	ModeSet = "set"
)

// maxShown is how many error messages a run keeps (Result.FirstErrors) and
// writes to Config.Log.
const maxShown = 5

// Config describes one run. Zero Conns or Depth mean 1, zero Timeout 5s.
type Config struct {
	Addr     string        // server address, host:port
	Mode     string        // ModeLookup, ModeCheck or ModeSet
	Conns    int           // connections, each driven by one goroutine
	Duration time.Duration // stop issuing after this long (0 = no time limit)
	Count    int           // stop after this many requests in all (0 = no count limit)
	Depth    int           // requests in flight per connection (pipelining depth, 1 = none)
	Users    int           // users are drawn from [First, First+Users)
	First    int
	Miss     float64 // lookup/check: fraction of requests for an unknown user / a wrong password
	// Once makes lookup and check ask for each user First..First+Users-1
	// exactly once, then stop (set always does): a pass over cold caches.
	Once    bool
	Seed    int64         // random seed; connection k uses the stream (Seed, k)
	Timeout time.Duration // per-request timeout, enforced by closing the connection

	// VerifyHost makes lookup and check also require the user's
	// tohost="..." field in the +OK line.
	VerifyHost bool
	// AcceptAny checks only the status (+OK for a hit, -ERR for a miss), not
	// the user name, message or line ending: for the echo server, which
	// answers every line with the same fixed reply (like loadgen without
	// -verify-host).
	AcceptAny bool
	// Secret, when set, is sent as `auth <secret>` first on every
	// connection, for a directory configured with a shared secret.
	Secret string

	// Log, if set, receives the first few error messages as they happen.
	Log io.Writer

	// lmtp-deliver (RunDeliveries): MessageBytes is the size of each
	// message (0: 10 KiB), Rcpts the recipients of each (0: 1), and
	// ToHost, when set, keeps to the users whose tohost it is (the
	// backend's --name): the others would be refused with 450.
	MessageBytes int
	Rcpts        int
	ToHost       string

	// imap-fetch (RunFetches): Messages is N, the messages of each
	// FETCH 1:N, and Fetch the command (FetchEnvelope, FetchBody or
	// FetchBoth, the default).
	Messages int
	Fetch    string

	// ldap-search, ldap-bind (RunLDAP): LDAPBase is the directory's
	// suffix (empty: dc=tohost); users are uid=<login>,ou=users,<base>.
	LDAPBase string
}

// Result is the outcome of a run. Requests counts every request that got an
// answer or failed, Errors those that were wrong or failed.
type Result struct {
	Mode      string
	Conns     int
	Depth     int
	Requests  int64
	Errors    int64
	Elapsed   time.Duration
	RPS       float64
	P50       time.Duration
	P99       time.Duration
	P999      time.Duration
	Max       time.Duration
	ClientCPU float64 // this process's CPU use during the run, percent of one core

	// FirstErrors holds the first few error messages.
	FirstErrors []string
}

// String is the one-line summary, in the format of loadgen's:
//
//	mode=lookup c=16 depth=1 requests=N errors=0 elapsed_s=10.00 rps=R p50_us=.. p99_us=.. p999_us=.. client_cpu=..%
func (r Result) String() string {
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	return fmt.Sprintf("mode=%s c=%d depth=%d requests=%d errors=%d elapsed_s=%.2f rps=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f client_cpu=%.0f%%",
		r.Mode, r.Conns, r.Depth, r.Requests, r.Errors, r.Elapsed.Seconds(), r.RPS,
		us(r.P50), us(r.P99), us(r.P999), r.ClientCPU)
}

// Run connects Conns connections, runs the load until Duration has passed,
// Count requests were made, every user was set (ModeSet) or ctx is done,
// waits for the requests in flight, and returns the result. It returns an
// error if the configuration is invalid, a first connection fails, or any
// request failed (then with a partial Result as well); if ctx ended the run
// early, the partial Result comes with ctx's error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Conns == 0 {
		cfg.Conns = 1
	}
	if cfg.Depth == 0 {
		cfg.Depth = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}

	r := &runner{cfg: cfg, base: time.Now()}
	workers := make([]*worker, cfg.Conns)
	for k := range workers {
		w := newWorker(r, k)
		if err := w.dial(ctx); err != nil {
			for _, w := range workers[:k] {
				w.closeConn()
			}
			return Result{}, fmt.Errorf("bench: connection %d: %w", k, err)
		}
		workers[k] = w
	}

	done := make(chan struct{})
	go watchdog(r, workers, done)
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Since(r.base)
	if cfg.Duration > 0 {
		r.end = start + cfg.Duration
	}
	for _, w := range workers {
		wg.Go(func() { w.loop(ctx) })
	}
	wg.Wait()
	elapsed := time.Since(r.base) - start
	close(done)
	cpu := cpuTime() - cpu0

	var h histogram
	res := Result{Mode: cfg.Mode, Conns: cfg.Conns, Depth: cfg.Depth, Elapsed: elapsed}
	for _, w := range workers {
		h.merge(&w.hist)
		res.Errors += w.errs
	}
	if err := r.finish(&res, &h, cpu, "requests"); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

func (cfg *Config) validate() error {
	switch {
	case cfg.Mode != ModeLookup && cfg.Mode != ModeCheck && cfg.Mode != ModeSet:
		return fmt.Errorf("bench: unknown mode %q (want %s, %s or %s)", cfg.Mode, ModeLookup, ModeCheck, ModeSet)
	case cfg.Addr == "":
		return errors.New("bench: no address")
	case cfg.Conns < 1 || cfg.Depth < 1 || cfg.Users < 1 || cfg.First < 0 || cfg.Count < 0 || cfg.Duration < 0 || cfg.Timeout < 0:
		return errors.New("bench: need conns >= 1, depth >= 1, users >= 1, first >= 0, count >= 0, duration >= 0, timeout >= 0")
	case !(cfg.Miss >= 0 && cfg.Miss <= 1):
		return errors.New("bench: miss must be within [0, 1]")
	case cfg.Mode == ModeSet && cfg.Miss > 0:
		return errors.New("bench: miss applies to lookup and check only")
	case cfg.Once && cfg.Mode != ModeLookup && cfg.Mode != ModeCheck:
		return errors.New("bench: once applies to lookup and check only")
	case cfg.Mode != ModeSet && !cfg.Once && cfg.Duration == 0 && cfg.Count == 0:
		return errors.New("bench: need a duration or a count (or both)")
	}
	return nil
}

// runner is the state shared by the workers of one run.
type runner struct {
	cfg    Config
	base   time.Time     // monotonic origin of every timestamp below
	end    time.Duration // stop issuing at this time since base (0 = no time limit)
	issued atomic.Int64  // requests issued, against cfg.Count
	next   atomic.Int64  // ModeSet: offset of the next user to set
	nshown atomic.Int64
	mu     sync.Mutex
	shown  []string
}

// finish fills in res's figures from the merged histogram h and the CPU
// this process used, and returns an error when any of what (requests,
// sessions) failed.
func (r *runner) finish(res *Result, h *histogram, cpu time.Duration, what string) error {
	res.Requests = int64(h.n)
	if s := res.Elapsed.Seconds(); s > 0 {
		res.RPS = float64(res.Requests) / s
		res.ClientCPU = cpu.Seconds() / s * 100
	}
	res.P50, res.P99, res.P999 = h.quantile(0.50), h.quantile(0.99), h.quantile(0.999)
	res.Max = time.Duration(h.max)
	r.mu.Lock()
	res.FirstErrors = r.shown
	r.mu.Unlock()
	if res.Errors > 0 {
		return fmt.Errorf("bench: %d of %d %s failed; first: %s", res.Errors, res.Requests, what, res.FirstErrors[0])
	}
	return nil
}

// now is the time since the run's origin (monotonic).
func (r *runner) now() time.Duration { return time.Since(r.base) }

// report keeps and logs the first few error messages; msg is only called
// for those, so a run with millions of errors does not format them all.
func (r *runner) report(msg func() string) {
	if r.nshown.Add(1) > maxShown {
		return
	}
	m := msg()
	r.mu.Lock()
	r.shown = append(r.shown, m)
	if r.cfg.Log != nil {
		fmt.Fprintln(r.cfg.Log, "bench:", m)
	}
	r.mu.Unlock()
}

// pending is a request in flight.
type pending struct {
	i    int           // user index
	miss bool          // an unknown user or a wrong password: must be refused
	t0   time.Duration // when it was sent, since runner.base
}

// worker drives one connection.
type worker struct {
	r   *runner
	id  int
	rng *rand.Rand

	mu    sync.Mutex // guards conn against the watchdog
	conn  net.Conn
	since atomic.Int64 // send time of the oldest request in flight (since base); 0 = none
	fired atomic.Bool  // the watchdog closed the connection

	rd *bufio.Reader
	wr *bufio.Writer

	ring      []pending // requests in flight, oldest at head
	head, n   int
	buf, want []byte // scratch: request, expected reply
	hist      histogram
	errs      int64
}

func newWorker(r *runner, k int) *worker {
	return &worker{
		r:    r,
		id:   k,
		rng:  rand.New(rand.NewPCG(uint64(r.cfg.Seed), uint64(k))),
		rd:   bufio.NewReaderSize(nil, 16<<10),
		wr:   bufio.NewWriterSize(nil, 16<<10),
		ring: make([]pending, r.cfg.Depth),
		buf:  make([]byte, 0, 256),
		want: make([]byte, 0, 256),
	}
}

func (w *worker) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: w.r.cfg.Timeout}
	c, err := d.DialContext(ctx, "tcp", w.r.cfg.Addr)
	if err != nil {
		return err
	}
	w.rd.Reset(c)
	w.wr.Reset(c)
	if err := w.auth(c); err != nil {
		c.Close()
		return err
	}
	w.mu.Lock()
	w.conn = c
	w.mu.Unlock()
	return nil
}

// auth sends the shared secret, when there is one, before any request.
func (w *worker) auth(c net.Conn) error {
	if w.r.cfg.Secret == "" {
		return nil
	}
	c.SetDeadline(time.Now().Add(w.r.cfg.Timeout))
	defer c.SetDeadline(time.Time{})
	w.wr.WriteString("auth " + w.r.cfg.Secret + "\r\n")
	if err := w.wr.Flush(); err != nil {
		return err
	}
	line, err := w.rd.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+OK") {
		return fmt.Errorf("auth refused: %s", strings.TrimSpace(line))
	}
	return nil
}

func (w *worker) closeConn() {
	w.mu.Lock()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	w.mu.Unlock()
}

// take reserves the next request, or reports that the run has no more.
func (w *worker) take() (i int, miss bool, ok bool) {
	cfg := &w.r.cfg
	if cfg.Count > 0 && w.r.issued.Add(1) > int64(cfg.Count) {
		return 0, false, false
	}
	if cfg.Mode == ModeSet || cfg.Once {
		k := w.r.next.Add(1) - 1
		if k >= int64(cfg.Users) {
			return 0, false, false
		}
		i = cfg.First + int(k)
	} else {
		i = cfg.First + w.rng.IntN(cfg.Users)
	}
	miss = cfg.Miss > 0 && w.rng.Float64() < cfg.Miss
	return i, miss, true
}

// loop runs the closed loop: top the window up to Depth requests, send them
// in one write, read at least one reply and then every complete reply that
// is already buffered, repeat. When the run ends it stops issuing and drains
// the requests in flight.
func (w *worker) loop(ctx context.Context) {
	defer w.closeConn()
	cfg := &w.r.cfg
	stopping := false
	for {
		if !stopping && (ctx.Err() != nil || (w.r.end > 0 && w.r.now() >= w.r.end)) {
			stopping = true
		}
		if w.conn == nil { // after a transport failure
			if stopping {
				return
			}
			t0 := w.r.now()
			if err := w.dial(ctx); err != nil {
				// A dead server must not stall a count-limited run: each
				// failed dial uses up (and fails) one request.
				i, miss, ok := w.take()
				if !ok {
					return
				}
				w.hist.record(w.r.now() - t0)
				w.errs++
				w.r.report(func() string {
					return fmt.Sprintf("conn %d: %s %s: redial: %v", w.id, cfg.Mode, w.login(i, miss), err)
				})
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}

		added := 0
		for !stopping && w.n < cfg.Depth {
			i, miss, ok := w.take()
			if !ok {
				stopping = true
				break
			}
			w.wr.Write(w.request(i, miss))
			w.ring[(w.head+w.n)%len(w.ring)] = pending{i: i, miss: miss}
			w.n++
			added++
		}
		if added > 0 {
			t0 := w.r.now()
			for k := w.n - added; k < w.n; k++ {
				w.ring[(w.head+k)%len(w.ring)].t0 = t0
			}
			if w.n == added { // the window was empty
				w.since.Store(int64(t0))
			}
			if err := w.wr.Flush(); err != nil {
				w.broken(err)
				continue
			}
		}
		if w.n == 0 {
			return // stopping, nothing in flight
		}
		if err := w.readReply(); err != nil {
			w.broken(err)
			continue
		}
		for w.n > 0 && w.lineBuffered() {
			if err := w.readReply(); err != nil {
				w.broken(err)
				break
			}
		}
	}
}

// lineBuffered reports whether a complete reply line is already buffered,
// so reading it cannot block.
func (w *worker) lineBuffered() bool {
	b, _ := w.rd.Peek(w.rd.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// errProtocol marks a reply that cannot be matched to a request, after which
// the connection is out of step and is dropped.
type errProtocol struct{ line []byte }

func (e errProtocol) Error() string { return fmt.Sprintf("protocol: unexpected line %q", e.line) }

// readReply reads the reply to the oldest request in flight (any +DATA lines
// and the final line), verifies and records it.
func (w *worker) readReply() error {
	var data int
	var line []byte
	for {
		var err error
		line, err = w.rd.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errProtocol{line[:min(len(line), 80)]}
			}
			return err
		}
		if !bytes.HasPrefix(line, []byte("+DATA")) {
			break
		}
		data++
	}
	if !final(line) {
		return errProtocol{bytes.TrimRight(line, "\r\n")}
	}
	t := w.r.now()
	p := w.ring[w.head]
	w.head = (w.head + 1) % len(w.ring)
	w.n--
	if w.n > 0 {
		w.since.Store(int64(w.ring[w.head].t0))
	} else {
		w.since.Store(0)
	}
	w.hist.record(t - p.t0)
	if msg := w.verify(p, line, data); msg != "" {
		w.errs++
		w.r.report(func() string { return fmt.Sprintf("conn %d: %s", w.id, msg) })
	}
	return nil
}

// final reports whether line is a final reply line (+OK, -ERR or -DEAD).
func final(line []byte) bool {
	return bytes.HasPrefix(line, []byte("+OK")) || bytes.HasPrefix(line, []byte("-ERR")) ||
		bytes.HasPrefix(line, []byte("-DEAD"))
}

// broken fails every request in flight after a transport failure (or an
// out-of-step reply) and drops the connection; the loop re-dials.
func (w *worker) broken(err error) {
	cfg := &w.r.cfg
	if w.fired.Swap(false) {
		err = fmt.Errorf("timeout after %v (%w)", cfg.Timeout, err)
	}
	w.closeConn()
	w.since.Store(0)
	t := w.r.now()
	inflight := w.n
	var oldest pending
	if inflight > 0 {
		oldest = w.ring[w.head]
	}
	for ; w.n > 0; w.n-- {
		w.hist.record(t - w.ring[w.head].t0)
		w.head = (w.head + 1) % len(w.ring)
		w.errs++
	}
	w.head = 0
	w.r.report(func() string {
		return fmt.Sprintf("conn %d: %s %s: %v (%d requests in flight failed)",
			w.id, cfg.Mode, w.login(oldest.i, oldest.miss), err, inflight)
	})
	time.Sleep(10 * time.Millisecond) // a dead server must not make us spin
}

// login returns the name request i uses, for messages.
func (w *worker) login(i int, miss bool) string {
	if miss && w.r.cfg.Mode == ModeLookup {
		return MissLogin(i)
	}
	return Login(i)
}

// request encodes the request for user i into w.buf.
func (w *worker) request(i int, miss bool) []byte {
	b := w.buf[:0]
	switch w.r.cfg.Mode {
	case ModeLookup:
		b = append(b, "lookup "...)
		if miss {
			b = AppendMissLogin(b, i)
		} else {
			b = AppendLogin(b, i)
		}
	case ModeCheck:
		b = append(b, "check "...)
		b = AppendLogin(b, i)
		b = append(b, ' ')
		if miss {
			b = append(b, "wrong-"...)
		}
		b = AppendPassword(b, i)
	case ModeSet:
		b = append(b, "set "...)
		b = AppendLogin(b, i)
		b = append(b, ' ')
		b = append(b, PasswordHash(i)...)
		b = append(b, ` tohost="`...)
		b = append(b, ToHost(i)...)
		b = append(b, `" quota="`...)
		b = strconv.AppendInt(b, Quota(i), 10)
		b = append(b, `" name="`...)
		b = append(b, Name(i)...)
		b = append(b, '"')
	}
	b = append(b, '\r', '\n')
	w.buf = b
	return b
}

// verify checks the reply line (with its line ending) to request p, preceded
// by data +DATA lines. It returns "" if the answer is right, else why not.
func (w *worker) verify(p pending, line []byte, data int) string {
	cfg := &w.r.cfg
	text := bytes.TrimSuffix(line, []byte("\n"))
	crlf := len(text) < len(line) && bytes.HasSuffix(text, []byte("\r"))
	text = bytes.TrimSuffix(text, []byte("\r"))
	var want []byte
	exact := false // want is the whole line, not a prefix
	switch {
	case cfg.Mode == ModeSet:
		if cfg.AcceptAny {
			want = append(w.want[:0], "+OK"...)
		} else {
			want = append(AppendLogin(append(w.want[:0], "+OK "...), p.i), " added to database"...)
			exact = true
		}
	case p.miss:
		switch {
		case cfg.AcceptAny:
			want = append(w.want[:0], "-ERR"...)
		case cfg.Mode == ModeLookup:
			want = append(AppendMissLogin(append(w.want[:0], "-ERR "...), p.i), " does not exist"...)
			exact = true
		default:
			want = append(AppendLogin(append(w.want[:0], "-ERR "...), p.i), " password wrong or not a valid user"...)
			exact = true
		}
	default: // lookup or check of an existing user
		if cfg.AcceptAny {
			want = append(w.want[:0], "+OK"...)
		} else {
			want = append(AppendLogin(append(w.want[:0], "+OK "...), p.i), " config 0"...)
		}
	}
	w.want = want

	var why string
	switch {
	case data > 0:
		why = fmt.Sprintf("%d unexpected +DATA lines", data)
	case !cfg.AcceptAny && !crlf:
		why = "reply not ended by CRLF"
	case exact && !bytes.Equal(text, want):
		why = fmt.Sprintf("want %q", want)
	case !bytes.HasPrefix(text, want):
		why = fmt.Sprintf("want prefix %q", want)
	case !exact && !cfg.AcceptAny && len(text) > len(want) && text[len(want)] != ' ':
		why = fmt.Sprintf("want %q followed by fields", want)
	case cfg.VerifyHost && !p.miss && cfg.Mode != ModeSet && !hasField(text, "tohost", ToHost(p.i)):
		why = fmt.Sprintf("lacks tohost=%q", ToHost(p.i))
	default:
		return ""
	}
	return fmt.Sprintf("%s %s (miss=%v): got %q: %s", cfg.Mode, w.login(p.i, p.miss), p.miss, text, why)
}

// hasField reports whether line holds the field ` label="value"`.
func hasField(line []byte, label, value string) bool {
	for {
		k := bytes.Index(line, []byte(label))
		if k < 0 {
			return false
		}
		rest := line[k+len(label):]
		if k > 0 && line[k-1] == ' ' && len(rest) >= len(value)+3 && rest[0] == '=' && rest[1] == '"' &&
			string(rest[2:2+len(value)]) == value && rest[2+len(value)] == '"' {
			return true
		}
		line = rest
	}
}

// watchdog enforces the per-request timeout: it closes the connection of a
// worker whose oldest request has been in flight longer than the timeout,
// which fails that request (and the others in flight) with a transport
// error. One goroutine for all connections is much cheaper than a timer per
// request.
func watchdog(r *runner, workers []*worker, done <-chan struct{}) {
	timeout := r.cfg.Timeout
	t := time.NewTicker(max(min(timeout/4, 100*time.Millisecond), time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			now := int64(r.now())
			for _, w := range workers {
				if since := w.since.Load(); since != 0 && now-since > int64(timeout) {
					w.mu.Lock()
					// Look again under the lock: the request may have been
					// answered, or the connection replaced, meanwhile.
					if since := w.since.Load(); w.conn != nil && since != 0 && now-since > int64(timeout) {
						w.fired.Store(true)
						w.conn.Close()
					}
					w.mu.Unlock()
				}
			}
		}
	}
}
