package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tohost/tohost/internal/testservices"
)

// TestFrozenRedisNodesStaySafe: Redis frozen (SIGSTOP: its connections
// stay open and say nothing), a password change and a tohost change on
// node A reach no invalidation to node B, whose in-process cache holds
// the old records for an hour. B notices that its channel went silent,
// stops trusting that cache and answers from PostgreSQL: the new values,
// and answers for everyone else too. Once Redis resumes, B flushes the
// cache it may have missed invalidations for, and invalidations flow
// again.
func TestFrozenRedisNodesStaySafe(t *testing.T) {
	pg := testservices.Postgres(t)
	rs := startRedisServer(t)
	shared := []string{"--postgres", pg, "--redis", "redis://" + rs.addr(), "--cache-ttl", "1h",
		"--redis-ttl", "1h", "--negative-ttl", "1h", "--redis-stale-after", "1s", "--login-penalty-max", "0"}
	a := dial(t, startDirectory(t, t.TempDir(), shared...).addr)
	b := dial(t, startDirectory(t, t.TempDir(), shared...).addr)
	a.expect("set u@x old tohost=b1", "+OK u@x added to database")
	a.expect("set v@x pw tohost=b1", "+OK v@x added to database")
	a.expect("set w@x pw tohost=b1", "+OK w@x added to database")
	for _, req := range []string{"check u@x old", "lookup v@x", "lookup w@x"} {
		user := strings.Fields(req)[1]
		b.eventually(req, fmt.Sprintf(`+OK %s config 0 tohost="b1"`, user))
		b.expect(req, fmt.Sprintf(`+OK %s config 0 tohost="b1"`, user)) // now in B's caches
	}

	rs.freeze(syscall.SIGSTOP)
	defer rs.freeze(syscall.SIGCONT)
	a.expect("set u@x new", "+OK u@x added to database")
	a.expect("set v@x (NULL) tohost=b2", "+OK v@x added to database")
	b.eventually("check u@x new", `+OK u@x config 0 tohost="b1"`)
	b.expect("check u@x old", "-ERR u@x password wrong or not a valid user")
	b.eventually("lookup v@x", `+OK v@x config 0 tohost="b2"`)
	// B keeps answering, from PostgreSQL: known users, new ones, misses.
	b.expect("lookup w@x", `+OK w@x config 0 tohost="b1"`)
	a.expect("set fresh@x pw tohost=b3", "+OK fresh@x added to database")
	b.expect("lookup fresh@x", `+OK fresh@x config 0 tohost="b3"`)
	b.expect("lookup nobody@x", "-ERR nobody@x does not exist")

	rs.freeze(syscall.SIGCONT)
	b.eventually("lookup v@x", `+OK v@x config 0 tohost="b2"`)
	b.expect("check u@x new", `+OK u@x config 0 tohost="b1"`)
	// Invalidations flow again, and B's cache serves again: the hour-long
	// TTLs mean only an invalidation can bring the change.
	a.expect("set w@x (NULL) tohost=b4", "+OK w@x added to database")
	b.eventually("lookup w@x", `+OK w@x config 0 tohost="b4"`)
	a.expect("set v@x (NULL) tohost=b5", "+OK v@x added to database")
	b.eventually("lookup v@x", `+OK v@x config 0 tohost="b5"`)
}

// TestRedisClusterTwoNodes: two directory nodes share a three-master Redis
// Cluster (seed list and redis+cluster:// URL); writes through A reach B
// for names spread over the hash slots of all masters, and a bulk import
// empties every master's keys.
func TestRedisClusterTwoNodes(t *testing.T) {
	pg := testservices.Postgres(t)
	addrs := startRedisCluster(t)
	common := []string{"--postgres", pg, "--cache-ttl", "1h", "--redis-ttl", "1h", "--negative-ttl", "1h"}
	a := dial(t, startDirectory(t, t.TempDir(), append(common, "--redis", strings.Join(addrs, ","))...).addr)
	b := dial(t, startDirectory(t, t.TempDir(), append(common, "--redis", "redis+cluster://"+strings.Join(addrs, ","))...).addr)
	const users = 12 // about four per master
	for i := range users {
		a.expect(fmt.Sprintf("set c%d@x pw tohost=b1", i), fmt.Sprintf("+OK c%d@x added to database", i))
	}
	for i := range users {
		b.eventually(fmt.Sprintf("lookup c%d@x", i), fmt.Sprintf(`+OK c%d@x config 0 tohost="b1"`, i))
		b.expect(fmt.Sprintf("lookup c%d@x", i), fmt.Sprintf(`+OK c%d@x config 0 tohost="b1"`, i))
	}
	for i := range users {
		a.expect(fmt.Sprintf("set c%d@x (NULL) tohost=b2", i), fmt.Sprintf("+OK c%d@x added to database", i))
	}
	for i := range users {
		b.eventually(fmt.Sprintf("lookup c%d@x", i), fmt.Sprintf(`+OK c%d@x config 0 tohost="b2"`, i))
	}

	// Let the write's tombstones go (as they expire after a few seconds),
	// then A's reads fill Redis on every master: the import must empty
	// them all, or the nodes would read b2 back from Redis.
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer rc.Close()
	for i := range users {
		if err := rc.Del(context.Background(), fmt.Sprintf("tohost:user:c%d@x", i)).Err(); err != nil {
			t.Fatal(err)
		}
		a.expect(fmt.Sprintf("lookup c%d@x", i), fmt.Sprintf(`+OK c%d@x config 0 tohost="b2"`, i))
	}
	if n := cachedIn(t, rc, "tohost:user:c*"); n != users {
		t.Fatalf("%d users cached in Redis, want %d", n, users)
	}
	var csv strings.Builder
	for i := range users {
		fmt.Fprintf(&csv, "c%d@x:{SSHA}x:tohost=\"b3\"\n", i)
	}
	in := writeFile(t, t.TempDir(), "nwauth.txt", csv.String())
	code, out, errOut := tohost(t, "import", "--postgres", pg, "--redis", strings.Join(addrs, ","), in)
	if code != 0 {
		t.Fatalf("import: %s %s", out, errOut)
	}
	for i := range users {
		for _, c := range []*conn{a, b} {
			c.eventually(fmt.Sprintf("lookup c%d@x", i), fmt.Sprintf(`+OK c%d@x config 0 tohost="b3"`, i))
		}
	}
}

// cachedIn counts the keys matching pattern on every master.
func cachedIn(t *testing.T, rc *redis.ClusterClient, pattern string) int {
	t.Helper()
	var mu sync.Mutex
	n := 0
	err := rc.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, pattern).Result()
		mu.Lock()
		n += len(keys)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPostgresFailover: a directory on a multi-host URL
// (target_session_attrs=read-write) with the standby as its read replica.
// The primary dies; the directory keeps answering reads (from the
// replica), answers writes -DEAD, never a false +OK; once the standby is
// promoted, writes go to it without a restart; and every acknowledged
// write is on the new primary (replication is synchronous: an
// acknowledged commit is on the standby).
func TestPostgresFailover(t *testing.T) {
	primary := startPrivatePostgres(t)
	standby := primary.startStandby()
	primary.makeSynchronous()
	d := startDirectory(t, t.TempDir(), "--postgres", multiHostURL(primary, standby),
		"--postgres-read", standby.url(), "--postgres-read-lag", "200ms", "--postgres-timeout", "1s")
	c := dial(t, d.addr)
	var acked []string
	for i := range 10 {
		c.expect(fmt.Sprintf("set f%d@x pw n=%d", i, i), fmt.Sprintf("+OK f%d@x added to database", i))
		acked = append(acked, fmt.Sprintf("f%d@x", i))
	}

	primary.stop()
	// Reads: users never read before, so not in any cache.
	c.eventually("lookup f3@x", `+OK f3@x config 0 n="3"`)
	c.expect("lookup f4@x", `+OK f4@x config 0 n="4"`)
	deadline := time.Now().Add(hangGuard)
	for i := 0; ; i++ {
		if i == 3 {
			standby.run("pg_ctl", "-D", standby.data(), "-w", "promote")
		}
		name := fmt.Sprintf("g%d@x", i)
		c.write(fmt.Sprintf("set %s pw n=%d\r\n", name, i))
		got := c.line()
		if got == "+OK "+name+" added to database" && i >= 3 {
			acked = append(acked, name)
			if i > 3 {
				break
			}
			continue
		}
		if (i < 3 && got != "-DEAD directory unavailable") || !strings.HasPrefix(got, "-DEAD") && !strings.HasPrefix(got, "+OK") {
			t.Fatalf("write %d during failover: %q", i, got)
		}
		if time.Now().After(deadline) {
			t.Fatal("writes never resumed after the promotion")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.expect("lookup f5@x", `+OK f5@x config 0 n="5"`)

	// A process with no cache of its own, on the new primary only.
	fresh := dial(t, startDirectory(t, t.TempDir(), "--postgres", standby.url()).addr)
	for _, name := range acked {
		fresh.write("lookup " + name + "\r\n")
		if got := fresh.line(); !strings.HasPrefix(got, "+OK "+name+" config 0 n=") {
			t.Fatalf("acknowledged %s: %q on the new primary", name, got)
		}
	}
}

// TestPostgresDemotedPrimary: the primary turns read-only under open
// connections (as a demoted primary does) and the standby is promoted.
// Reads meanwhile come from the standby as read replica.
// The directory's pooled connections to the old primary, which refuse
// writes, are dropped, and new ones find the new primary through the host
// list: writes resume without a restart.
func TestPostgresDemotedPrimary(t *testing.T) {
	primary := startPrivatePostgres(t)
	standby := primary.startStandby()
	d := startDirectory(t, t.TempDir(), "--postgres", multiHostURL(primary, standby),
		"--postgres-read", standby.url(), "--postgres-read-lag", "200ms", "--postgres-timeout", "1s")
	c := dial(t, d.addr)
	c.expect("set a@x pw", "+OK a@x added to database")
	primary.exec("ALTER SYSTEM SET default_transaction_read_only = on")
	primary.exec("SELECT pg_reload_conf()")
	c.eventually("set b@x pw", "-DEAD directory unavailable")
	c.eventually("lookup a@x", "+OK a@x config 0") // from the replica
	standby.run("pg_ctl", "-D", standby.data(), "-w", "promote")
	c.eventually("set c@x pw", "+OK c@x added to database")
	// Every write now: no connection to the old primary is left to fail one.
	for i := range 50 {
		c.expect(fmt.Sprintf("set c%d@x pw", i), fmt.Sprintf("+OK c%d@x added to database", i))
	}
	fresh := dial(t, startDirectory(t, t.TempDir(), "--postgres", standby.url()).addr)
	fresh.expect("lookup c@x", "+OK c@x config 0")
	fresh.expect("lookup c49@x", "+OK c49@x config 0")
}

// TestReadReplicaReadsYourWrites: two nodes read their cache misses from
// a streaming replica, which then stops replaying (a replica lagging
// without bound). A write through A is read back at once through A, and
// through B as soon as B drops its copy: never the replica's older
// record, which B would otherwise keep for the hour its caches hold
// entries. The reads come within the replica's allowed lag of the write,
// when only the names written are kept from the replica.
func TestReadReplicaReadsYourWrites(t *testing.T) {
	primary := startPrivatePostgres(t)
	standby := primary.startStandby()
	redisAddr, prefix := testservices.Redis(t)
	shared := []string{"--postgres", primary.url(), "--postgres-read", standby.url(), "--postgres-read-lag", "1s",
		"--redis", "redis://" + redisAddr, "--redis-prefix", prefix,
		"--cache-ttl", "1h", "--redis-ttl", "1h", "--negative-ttl", "1h"}
	var nodes []*conn
	var metrics []string
	for range 2 {
		httpAddr := freeAddr(t)
		metrics = append(metrics, "http://"+httpAddr+"/metrics")
		nodes = append(nodes, dial(t, startDirectory(t, t.TempDir(), append(shared, "--http-addr", httpAddr)...).addr))
	}
	a, b := nodes[0], nodes[1]
	a.expect("set u@x pw tohost=b1", "+OK u@x added to database")
	b.eventually("lookup u@x", `+OK u@x config 0 tohost="b1"`)
	// Wait until both nodes use the replica: unknown names, never cached.
	for i, c := range nodes {
		probe := 0
		pollUntil(t, "reads from the replica", func() bool {
			probe++
			c.expect(fmt.Sprintf("lookup probe%d@x", probe), fmt.Sprintf("-ERR probe%d@x does not exist", probe))
			return metricValue(t, metrics[i], "tohost_postgres_replica_reads_total") > 0
		})
	}
	standby.exec("SELECT pg_wal_replay_pause()")

	a.expect("set u@x (NULL) tohost=b2", "+OK u@x added to database")
	a.expect("lookup u@x", `+OK u@x config 0 tohost="b2"`)
	a.expect("set n@x pw tohost=b3", "+OK n@x added to database")
	a.expect("lookup n@x", `+OK n@x config 0 tohost="b3"`)
	b.expect("lookup n@x", `+OK n@x config 0 tohost="b3"`)
	deadline := time.Now().Add(hangGuard)
	for {
		b.write("lookup u@x\r\n")
		got := b.line()
		if got == `+OK u@x config 0 tohost="b2"` {
			break
		}
		if got != `+OK u@x config 0 tohost="b1"` || time.Now().After(deadline) {
			t.Fatalf("B reads %q", got)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for range 20 {
		b.expect("lookup u@x", `+OK u@x config 0 tohost="b2"`)
	}
	standby.exec("SELECT pg_wal_replay_resume()")
}

// metricValue reads one unlabelled metric from a /metrics page.
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q", name, line)
			}
			return f
		}
	}
	t.Fatalf("%s not in %s", name, url)
	return 0
}
