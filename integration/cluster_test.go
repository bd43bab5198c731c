package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tohost/tohost/internal/testservices"
)

// hangGuard bounds a wait for something that must happen. It only keeps
// a broken build from hanging the suite: it says nothing about speed.
const hangGuard = 30 * time.Second

// eventually repeats a request until its reply is want; the hang guard
// fails the test.
func (c *conn) eventually(req, want string) {
	c.t.Helper()
	deadline := time.Now().Add(hangGuard)
	var got string
	for time.Now().Before(deadline) {
		c.write(req + "\r\n")
		if got = c.line(); got == want {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.t.Fatalf("%s: still %q after %v, want %q", req, got, hangGuard, want)
}

func (c *conn) expect(req, want string) {
	c.t.Helper()
	c.write(req + "\r\n")
	if got := c.line(); got != want {
		c.t.Fatalf("%s:\n got %q\nwant %q", req, got, want)
	}
}

// TestTwoNodesOneTruth: two directory processes on one Postgres and one
// Redis; a write through one is seen through the other, because it is
// invalidated: every TTL is an hour.
func TestTwoNodesOneTruth(t *testing.T) {
	pg := testservices.Postgres(t)
	redisAddr, prefix := testservices.Redis(t)
	shared := []string{"--postgres", pg, "--redis", "redis://" + redisAddr, "--redis-prefix", prefix,
		"--cache-ttl", "1h", "--redis-ttl", "1h"}
	a := dial(t, startDirectory(t, t.TempDir(), shared...).addr)
	b := dial(t, startDirectory(t, t.TempDir(), shared...).addr)

	a.expect("set u@x pw tohost=backend1", "+OK u@x added to database")
	b.eventually("lookup u@x", `+OK u@x config 0 tohost="backend1"`)
	for i := 0; i < 3; i++ { // B now serves it from its caches
		b.expect("lookup u@x", `+OK u@x config 0 tohost="backend1"`)
	}
	a.expect("set u@x (NULL) tohost=backend2", "+OK u@x added to database")
	b.eventually("lookup u@x", `+OK u@x config 0 tohost="backend2"`)
	a.expect("del u@x", "+OK u@x deleted")
	b.eventually("lookup u@x", "-ERR u@x does not exist")
}

// TestPostgresOutage: with Postgres down, cached users are still served,
// misses and writes get -DEAD (never -ERR), and the directory recovers by
// itself when Postgres returns.
func TestPostgresOutage(t *testing.T) {
	pg := startPrivatePostgres(t)
	d := startDirectory(t, t.TempDir(), "--postgres", pg.url())
	c := dial(t, d.addr)
	for i := 0; i < 5; i++ {
		c.expect(fmt.Sprintf("set u%d@x pw%d tohost=b%d", i, i, i), fmt.Sprintf("+OK u%d@x added to database", i))
		c.expect(fmt.Sprintf("lookup u%d@x", i), fmt.Sprintf(`+OK u%d@x config 0 tohost="b%d"`, i, i))
	}
	c.expect("check u1@x pw1", `+OK u1@x config 0 tohost="b1"`)

	pg.stop()
	c.expect("lookup u2@x", `+OK u2@x config 0 tohost="b2"`) // cached
	c.expect("check u1@x pw1", `+OK u1@x config 0 tohost="b1"`)
	c.expect("lookup stranger@x", "-DEAD directory unavailable")
	c.expect("check stranger@x pw", "-DEAD directory unavailable")
	c.expect("set u9@x pw", "-DEAD directory unavailable")
	c.expect("del u3@x", "-DEAD directory unavailable")

	pg.start()
	c.eventually("set u9@x pw tohost=b9", "+OK u9@x added to database")
	c.expect("lookup u9@x", `+OK u9@x config 0 tohost="b9"`)
	c.expect("lookup stranger@x", "-ERR stranger@x does not exist")
}

// TestAcknowledgedMeansCommitted: every +OK'd write is in Postgres, read
// back by a fresh directory process with no cache of its own.
func TestAcknowledgedMeansCommitted(t *testing.T) {
	pg := testservices.Postgres(t)
	d := startDirectory(t, t.TempDir(), "--postgres", pg)
	c := dial(t, d.addr)
	var req strings.Builder
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&req, "set p%03d@x {SSHA}aGFzaGhhc2hoYXNoaGFzaGhhc2g= n=%d\r\n", i, i)
	}
	c.write(req.String())
	for i := 0; i < 500; i++ {
		if got := c.line(); got != fmt.Sprintf("+OK p%03d@x added to database", i) {
			t.Fatalf("reply %d: %q", i, got)
		}
	}
	d.kill()
	c = dial(t, startDirectory(t, t.TempDir(), "--postgres", pg).addr)
	c.expect("search p -max 0", "+OK Search Complete 0 items found out of 500")
	c.expect("lookup p499@x", `+OK p499@x config 0 n="499"`)
}

// TestMigrateCommand: `tohost directory migrate` creates the schema, and
// running it again changes nothing.
func TestMigrateCommand(t *testing.T) {
	pg := testservices.Postgres(t)
	for i := 0; i < 2; i++ {
		out, err := exec.Command(binary, "directory", "migrate", "--postgres", pg).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "schema up to date") {
			t.Fatalf("migrate run %d: %v\n%s", i, err, out)
		}
	}
	d := startDirectory(t, t.TempDir(), "--postgres", pg)
	dial(t, d.addr).expect("set m@x pw", "+OK m@x added to database")
	out, err := exec.Command(binary, "directory", "migrate", "--postgres", "postgres://postgres@127.0.0.1:1/none").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unavailable") {
		t.Fatalf("migrate against a closed port: %v\n%s", err, out)
	}
}

// TestPostgresHangs: a database that stops answering without closing its
// connections turns into -DEAD after --postgres-timeout, not a hang (the
// connection's read deadline fails a hang).
func TestPostgresHangs(t *testing.T) {
	pg := startPrivatePostgres(t)
	d := startDirectory(t, t.TempDir(), "--postgres", pg.url(), "--postgres-timeout", "300ms")
	c := dial(t, d.addr)
	c.expect("set u@x pw", "+OK u@x added to database")
	c.expect("lookup u@x", "+OK u@x config 0")
	pg.freeze(syscall.SIGSTOP)
	defer pg.freeze(syscall.SIGCONT)
	c.expect("lookup stranger@x", "-DEAD directory unavailable")
	c.expect("set v@x pw", "-DEAD directory unavailable")
	c.expect("lookup u@x", "+OK u@x config 0") // cached
	pg.freeze(syscall.SIGCONT)
	c.eventually("set v@x pw", "+OK v@x added to database")
}
