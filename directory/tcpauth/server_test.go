package tcpauth

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tohost/tohost/directory"
	"github.com/tohost/tohost/directory/password"
	"github.com/tohost/tohost/directory/store/bolt"
	"github.com/tohost/tohost/internal/listen"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// harness is a server on a loopback port over a fresh bbolt store.
type harness struct {
	addr   string
	store  directory.Store
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, cfg Config, wrap func(directory.Store) directory.Store) *harness {
	t.Helper()
	return startWith(t, cfg, setup{wrap: wrap})
}

// behind puts the harness's listener behind a daemon's connection gate.
func behind(gate *listen.Gate) setup {
	return setup{listen: func(ln net.Listener) net.Listener { return gate.Wrap(ln, listen.Options{Refusal: Refusal}) }}
}

// setup holds the less common choices of a harness.
type setup struct {
	wrap   func(directory.Store) directory.Store // wraps the store, if set
	dir    directory.Config                      // default: {SSHA} hashes
	listen func(net.Listener) net.Listener       // wraps the listener, if set
}

func startWith(t testing.TB, cfg Config, o setup) *harness {
	t.Helper()
	wrap := o.wrap
	st, err := bolt.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var s directory.Store = st
	if wrap != nil {
		s = wrap(st)
	}
	if o.dir.Scheme == "" {
		o.dir.Scheme = password.SchemeSSHA
	}
	svc := directory.NewService(s, o.dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.listen != nil {
		ln = o.listen(ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{addr: ln.Addr().String(), store: s, cancel: cancel, done: make(chan error, 1)}
	cfg.Version = "test"
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	go func() { h.done <- New(svc, cfg).Serve(ctx, ln) }()
	t.Cleanup(func() {
		h.stop(t)
		st.Close()
	})
	return h
}

func (h *harness) stop(t testing.TB) {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("server did not stop")
	}
}

// client is a raw protocol connection.
type client struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func (h *harness) dial(t testing.TB) *client {
	t.Helper()
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) send(lines ...string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// line reads one reply line and checks its CRLF ending.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read reply: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("reply %q does not end with CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect sends one request and checks the reply lines exactly.
func (c *client) expect(req string, want ...string) {
	c.t.Helper()
	c.send(req)
	for _, w := range want {
		if got := c.line(); got != w {
			c.t.Fatalf("%s:\n got %q\nwant %q", req, got, w)
		}
	}
}

func (c *client) expectClosed() {
	c.t.Helper()
	if l, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("connection still open, read %q", l)
	}
}

// TestNWAuthTranscript replays the NWAuth session of SurgeMail's
// documentation (docs/protocol.md, "A first session").
func TestNWAuthTranscript(t *testing.T) {
	c := start(t, Config{}, nil).dial(t)
	c.expect("set bob@test.com bob", "+OK bob@test.com added to database")
	c.expect("lookup bob@test.com", "+OK bob@test.com config 0")
	c.expect("check bob@test.com xxx", "-ERR bob@test.com password wrong or not a valid user")
	c.expect(`set bob@test.com (NULL) quota="200" fwd="fred@test.com"`, "+OK bob@test.com added to database")
	c.expect("lookup bob@test.com", `+OK bob@test.com config 0 quota="200" fwd="fred@test.com"`)
}

func TestCommands(t *testing.T) {
	c := start(t, Config{}, nil).dial(t)
	c.expect("set Bob@Test.com pw1 tohost=b1 name=\"Bob Smith\"", "+OK Bob@Test.com added to database")
	c.expect("LOOKUP BOB@TEST.COM", `+OK BOB@TEST.COM config 0 tohost="b1" name="Bob Smith"`)
	c.expect("check bob@test.com pw1 10.0.0.1", `+OK bob@test.com config 0 tohost="b1" name="Bob Smith"`)
	c.expect("check bob@test.com pw1 [::1]:25", `+OK bob@test.com config 0 tohost="b1" name="Bob Smith"`)
	c.expect("check bob@test.com pw1 not-an-ip", "-ERR bad client ip")
	c.expect("check nobody@test.com pw1", "-ERR nobody@test.com password wrong or not a valid user")
	c.expect(`set bob@test.com (NULL) tohost="" quota=5 name="Robert"`, "+OK bob@test.com added to database")
	c.expect("lookup bob@test.com", `+OK bob@test.com config 0 name="Robert" quota="5"`)
	c.expect("set bob@test.com {SSHA}bad-base64", "+OK bob@test.com added to database")
	c.expect("check bob@test.com pw1", "-ERR bob@test.com password wrong or not a valid user")
	c.expect("set bob@test.com pw2 status=suspended", "+OK bob@test.com added to database")
	c.expect("check bob@test.com pw2", "-ERR bob@test.com password wrong or not a valid user")
	c.expect("set bob@test.com (NULL) status=ok", "+OK bob@test.com added to database")
	c.expect("check bob@test.com pw2", `+OK bob@test.com config 0 name="Robert" quota="5" status="ok"`)
	c.expect("set new@test.com (NULL)", "-ERR a new user needs a password, not (NULL)")
	c.expect(`set bad"name@x pw`, "-ERR user name contains a quote")
	c.expect("set a@b@c pw", "-ERR user name contains more than one @")
	c.expect(`set a@b pw q="x`, "-ERR unterminated quote in value for q")
	c.expect("lookup new@test.com", "-ERR new@test.com does not exist")
	c.expect("set carol@test.com pw", "+OK carol@test.com added to database")
	c.expect("search test.com", "+DATA Bob@Test.com", "+DATA carol@test.com", "+OK Search Complete 2 items found out of 2")
	c.expect("search *@test.com -from 1", "+DATA carol@test.com", "+OK Search Complete 1 items found out of 2")
	c.expect("search ?ob* -max 1", "+DATA Bob@Test.com", "+OK Search Complete 1 items found out of 2")
	c.expect("search zzz", "+OK Search Complete 0 items found out of 2")
	c.expect("rename carol@test.com bob@test.com", "-ERR bob@test.com already exists")
	c.expect("rename carol@test.com Caroline@test.com", "+OK Caroline@test.com renamed")
	c.expect("check caroline@test.com pw", "+OK caroline@test.com config 0")
	c.expect("rename carol@test.com x@test.com", "-ERR carol@test.com does not exist")
	c.expect("del caroline@test.com", "+OK caroline@test.com deleted")
	c.expect("del caroline@test.com", "-ERR caroline@test.com does not exist")
	c.expect("ping", "+OK pong")
	c.expect("version", "+OK tohost test")
	c.expect("frob", "-ERR unknown command")
	c.expect("lookup", "-ERR missing user")
	c.send("", "  ") // blank lines get no reply
	c.expect("Quit", "+OK")
	c.expectClosed()
}

func TestHelpEndsWithOK(t *testing.T) {
	c := start(t, Config{}, nil).dial(t)
	c.send("help")
	n := 0
	for l := c.line(); l != "+OK"; l = c.line() {
		if !strings.HasPrefix(l, "+DATA ") {
			t.Fatalf("help line %q", l)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("help listed %d commands", n)
	}
}

// TestPipelinedLookups: 1,000 lookups written in one go come back as
// 1,000 replies, in order.
func TestPipelinedLookups(t *testing.T) {
	c := start(t, Config{}, nil).dial(t)
	for i := 0; i < 10; i++ {
		c.expect(fmt.Sprintf("set u%d@x pw tohost=h%d", i, i), fmt.Sprintf("+OK u%d@x added to database", i))
	}
	var req strings.Builder
	for i := 0; i < 1000; i++ {
		if i%7 == 3 {
			fmt.Fprintf(&req, "lookup missing%d@x\r\n", i)
		} else {
			fmt.Fprintf(&req, "lookup u%d@x\r\n", i%10)
		}
	}
	if _, err := io.WriteString(c.nc, req.String()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		want := fmt.Sprintf(`+OK u%d@x config 0 tohost="h%d"`, i%10, i%10)
		if i%7 == 3 {
			want = fmt.Sprintf("-ERR missing%d@x does not exist", i)
		}
		if got := c.line(); got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
	}
}

// TestPipelinedWrites: writes run concurrently but replies stay in order,
// and every request sees the writes sent before it.
func TestPipelinedWrites(t *testing.T) {
	c := start(t, Config{}, nil).dial(t)
	var req strings.Builder
	var want []string
	add := func(r, w string) { req.WriteString(r + "\r\n"); want = append(want, w) }
	for i := 0; i < 300; i++ {
		u := fmt.Sprintf("w%03d@x", i)
		add("set "+u+" pw n=1", "+OK "+u+" added to database")
		add("set "+u+" (NULL) n=2", "+OK "+u+" added to database")
		if i%50 == 0 {
			add("lookup "+u, "+OK "+u+` config 0 n="2"`)
		}
		if i%3 == 0 {
			add("del "+u, "+OK "+u+" deleted")
		}
	}
	add("rename w001@x r001@x", "+OK r001@x renamed")
	add("set r001@x (NULL) n=3", "+OK r001@x added to database")
	add("lookup r001@x", `+OK r001@x config 0 n="3"`)
	add("search w -max 2", "+DATA w002@x") // w000 deleted, w001 renamed
	want = append(want, "+DATA w004@x", "+OK Search Complete 2 items found out of 200")
	if _, err := io.WriteString(c.nc, req.String()); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if got := c.line(); got != w {
			t.Fatalf("reply %d = %q, want %q", i, got, w)
		}
	}
}

func TestAdminAndSecret(t *testing.T) {
	none := []netip.Prefix{}
	h := start(t, Config{AdminAllow: none}, nil)
	c := h.dial(t)
	c.expect("set a@x pw", "-ERR permission denied")
	c.expect("search a", "-ERR permission denied")
	c.expect("del a@x", "-ERR permission denied")
	c.expect("rename a@x b@x", "-ERR permission denied")
	c.expect("lookup a@x", "-ERR a@x does not exist")

	h = start(t, Config{AdminAllow: none, Secret: "s3cret"}, nil)
	c = h.dial(t)
	c.expect("lookup a@x", "-ERR authentication required")
	c.expect("auth wrong", "-ERR authentication failed")
	c.expect("ping", "-ERR authentication required")
	c.expect("auth s3cret", "+OK")
	c.expect("set a@x pw", "+OK a@x added to database")
	c.expect("lookup a@x", "+OK a@x config 0")
}

// TestAllowList: a client outside the daemon's allow-list is closed on.
func TestAllowList(t *testing.T) {
	gate := listen.NewGate(listen.Config{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Logger: discard})
	h := startWith(t, Config{}, behind(gate))
	c := h.dial(t)
	c.send("ping")
	c.expectClosed()
}

// TestConnectionCap: a client over the daemon's cap is told -DEAD.
func TestConnectionCap(t *testing.T) {
	gate := listen.NewGate(listen.Config{MaxConns: 1, Logger: discard})
	h := startWith(t, Config{}, behind(gate))
	first := h.dial(t)
	first.expect("ping", "+OK pong")
	second := h.dial(t)
	if got := second.line(); got != "-DEAD too many connections" {
		t.Fatalf("over the cap: %q", got)
	}
	second.expectClosed()
}

// TestNegativeLimits: limits below zero mean the defaults, as zero does,
// instead of a panic (MaxInflight) or a connection closed at once
// (IdleTimeout).
func TestNegativeLimits(t *testing.T) {
	reads := make(chan serverRead, 16)
	h := startWith(t, Config{MaxInflight: -1, IdleTimeout: -time.Second}, setup{
		listen: func(ln net.Listener) net.Listener { return &watchedListener{ln, reads} },
	})
	c := h.dial(t)
	c.expect("ping", "+OK pong")
	// Once the reply is out, the server waits for the next request: with
	// the default idle timeout, not one already past.
	for r := range reads {
		if !r.afterWrite {
			continue
		}
		if left := time.Until(r.deadline); left < time.Minute {
			t.Fatalf("waiting for a request with %v left before the idle timeout", left)
		}
		break
	}
	c.expect("ping", "+OK pong")
}

// serverRead is a read the server started on a connection: the read
// deadline in force and whether the server had written to it before.
type serverRead struct {
	deadline   time.Time
	afterWrite bool
}

// watchedListener reports every read its connections start.
type watchedListener struct {
	net.Listener
	reads chan<- serverRead
}

func (l *watchedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: nc, reads: l.reads}, nil
}

type watchedConn struct {
	net.Conn
	reads    chan<- serverRead
	mu       sync.Mutex
	deadline time.Time
	wrote    bool
}

func (c *watchedConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *watchedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *watchedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.wrote = true
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *watchedConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	r := serverRead{deadline: c.deadline, afterWrite: c.wrote}
	c.mu.Unlock()
	select {
	case c.reads <- r:
	default:
	}
	return c.Conn.Read(b)
}

func TestBadLinesCloseTheConnection(t *testing.T) {
	h := start(t, Config{}, nil)
	c := h.dial(t)
	c.expect("lookup "+strings.Repeat("a", 9000), "-ERR line too long")
	c.expectClosed()
	c = h.dial(t)
	c.expect("ping\x00", "-ERR bad characters")
	c.expectClosed()
}

func TestIdleTimeout(t *testing.T) {
	c := start(t, Config{IdleTimeout: 200 * time.Millisecond}, nil).dial(t)
	c.expect("ping", "+OK pong")
	c.expectClosed() // blocks until the server closes (or the 20 s guard)
}

// failingStore fails every write, as a full disk would, but still reads.
type failingStore struct{ directory.Store }

var errDiskFull = fmt.Errorf("%w: write tohost.db: no space left on device", directory.ErrUnavailable)

func (failingStore) Update(context.Context, string, directory.UpdateFunc) (*directory.User, error) {
	return nil, errDiskFull
}
func (failingStore) Delete(context.Context, string) error { return errDiskFull }

func TestStoreFailureIsDead(t *testing.T) {
	h := start(t, Config{}, nil)
	c := h.dial(t)
	c.expect("set a@x pw tohost=h1", "+OK a@x added to database")

	h2 := start(t, Config{}, func(s directory.Store) directory.Store { return failingStore{s} })
	c2 := h2.dial(t)
	c2.expect("set a@x pw", "-DEAD directory unavailable")
	c2.expect("del a@x", "-DEAD directory unavailable")
	c2.expect("lookup a@x", "-ERR a@x does not exist") // reads keep working
	c2.expect("ping", "+OK pong")
}

// TestShutdownAnswersEverything: requests read before shutdown get their
// replies, then the connection closes.
func TestShutdownAnswersEverything(t *testing.T) {
	h := start(t, Config{}, nil)
	c := h.dial(t)
	var req strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&req, "set s%d@x pw\r\n", i)
	}
	if _, err := io.WriteString(c.nc, req.String()); err != nil {
		t.Fatal(err)
	}
	// Wait for the first reply so the server has read the batch.
	if got := c.line(); got != "+OK s0@x added to database" {
		t.Fatal(got)
	}
	h.stop(t)
	for i := 1; i < 200; i++ {
		if got, want := c.line(), fmt.Sprintf("+OK s%d@x added to database", i); got != want {
			t.Fatalf("after shutdown reply %d = %q", i, got)
		}
	}
	c.expectClosed()
	if n, err := h.store.Count(context.Background()); err != nil || n != 200 {
		t.Fatalf("count = %d, %v", n, err)
	}
}

// TestRecordBoundsOverTCPAuth: a set that would grow a user past the
// directory's bounds gets -ERR naming the bound, and lookups stay bounded.
func TestRecordBoundsOverTCPAuth(t *testing.T) {
	c := start(t, Config{}, nil).dial(t)
	c.expect("set grow@x pw", "+OK grow@x added to database")
	var line strings.Builder
	line.WriteString("set grow@x (NULL)")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&line, " a%d=1", i)
	}
	c.expect(line.String(), "+OK grow@x added to database")
	line.Reset()
	line.WriteString("set grow@x (NULL)")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&line, " b%d=1", i)
	}
	c.expect(line.String(), "-ERR too many fields: 300, at most 256")
	c.expect("set grow@x (NULL) a0=", "+OK grow@x added to database")
}
