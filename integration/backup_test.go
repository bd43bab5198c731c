package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tohost/tohost/directory/store/bolt"
)

// writeLoad sets w00000@x, w00001@x, ... over its own TCPAuth connection
// until stopped, one at a time; acked is how many were answered +OK, so
// every name below acked was acknowledged.
type writeLoad struct {
	acked atomic.Int64
	stop  chan struct{}
	done  chan error
}

func startWriteLoad(t *testing.T, addr string) *writeLoad {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	w := &writeLoad{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() { w.done <- w.run(nc) }()
	return w
}

func (w *writeLoad) run(nc net.Conn) error {
	r := bufio.NewReader(nc)
	for i := int64(0); ; i++ {
		select {
		case <-w.stop:
			return nil
		default:
		}
		nc.SetDeadline(time.Now().Add(hangGuard))
		if _, err := fmt.Fprintf(nc, "set w%05d@x pw%d n=%d\r\n", i, i, i); err != nil {
			return err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("+OK w%05d@x added to database\r\n", i); line != want {
			return fmt.Errorf("set %d: %q", i, line)
		}
		w.acked.Store(i + 1)
	}
}

// waitFor returns once n writes were acknowledged.
func (w *writeLoad) waitFor(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for w.acked.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d writes acknowledged", w.acked.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

func (w *writeLoad) end(t *testing.T) int64 {
	t.Helper()
	close(w.stop)
	if err := <-w.done; err != nil {
		t.Fatal(err)
	}
	return w.acked.Load()
}

// TestHotBackupUnderLoad: a backup of a directory that is being written
// to checks (bolt.Verify), and a directory restored from it (stopped,
// file copied to tohost.db, started) holds every write acknowledged
// before the backup was asked for. Two backups: tohost backup, and one
// read slowly, so that many commits land while it is being copied (a
// copy of the file that is not one transaction's comes out torn then).
// Then export --from of the running directory is byte for byte the
// export of the stopped one.
func TestHotBackupUnderLoad(t *testing.T) {
	dataDir, httpAddr := t.TempDir(), freeAddr(t)
	d := startDirectory(t, dataDir, "--http-addr", httpAddr)
	// Big enough (about 10 MB) that the slow copy outlasts what the
	// sockets' buffers hold, so the directory is still copying while
	// the writes commit.
	preload(t, d.addr, 3000)
	load := startWriteLoad(t, d.addr)
	load.waitFor(t, 100)

	cli := filepath.Join(t.TempDir(), "tohost-backup.db")
	beforeCLI := load.acked.Load()
	code, _, stderr := tohost(t, "backup", "--from", "http://"+httpAddr, cli)
	if code != 0 {
		t.Fatalf("backup: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "users") {
		t.Errorf("backup's report: %s", stderr)
	}
	slow := filepath.Join(t.TempDir(), "slow.db")
	beforeSlow := load.acked.Load()
	slowBackup(t, "http://"+httpAddr+"/backup", slow)
	load.waitFor(t, load.acked.Load()+50) // the directory still takes writes
	total := load.end(t)

	wantWrites(t, cli, beforeCLI, total)
	n := wantWrites(t, slow, beforeSlow, total)

	live := filepath.Join(t.TempDir(), "live.csv")
	if code, _, stderr := tohost(t, "export", "--from", httpAddr, live); code != 0 {
		t.Fatalf("export --from: exit %d\n%s", code, stderr)
	}
	d.kill()
	stopped := filepath.Join(t.TempDir(), "stopped.csv")
	if code, _, stderr := tohost(t, "export", "--data-dir", dataDir, stopped); code != 0 {
		t.Fatalf("export: exit %d\n%s", code, stderr)
	}
	if a, b := readFile(t, live), readFile(t, stopped); a != b || strings.Count(a, "\n") != int(total)+3000+1 {
		t.Errorf("export --from of the running directory (%d lines) differs from the export of the stopped one (%d lines), %d users",
			strings.Count(a, "\n"), strings.Count(b, "\n"), total+3000)
	}

	restored := t.TempDir()
	copyFile(t, slow, filepath.Join(restored, bolt.FileName))
	c := dial(t, startDirectory(t, restored).addr)
	var req strings.Builder
	for i := range beforeSlow {
		fmt.Fprintf(&req, "lookup w%05d@x\r\n", i)
	}
	c.write(req.String())
	for i := range beforeSlow {
		if got, want := c.line(), fmt.Sprintf(`+OK w%05d@x config 0 n="%d"`, i, i); got != want {
			t.Fatalf("restored, acknowledged before the backup: got %q, want %q", got, want)
		}
	}
	c.expect("search w -max 0", fmt.Sprintf("+OK Search Complete 0 items found out of %d", n))
}

// preload sets p0@x ... p<n-1>@x, pipelined.
func preload(t *testing.T, addr string, n int) {
	t.Helper()
	c := dial(t, addr)
	var req strings.Builder
	for i := range n {
		fmt.Fprintf(&req, "set p%d@x {SSHA}aGFzaGhhc2hoYXNoaGFzaGhhc2g= note=%q\r\n", i, strings.Repeat("x", 2500))
	}
	c.write(req.String())
	for i := range n {
		if got := c.line(); got != fmt.Sprintf("+OK p%d@x added to database", i) {
			t.Fatalf("preload %d: %q", i, got)
		}
	}
}

// slowBackup reads GET /backup four kilobytes per millisecond into file,
// through a small receive buffer.
func slowBackup(t *testing.T, url, file string) {
	t.Helper()
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10)
		})
	}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/backup: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		n, err := io.ReadFull(resp.Body, buf)
		f.Write(buf[:n])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}

// wantWrites checks a backup file and that it holds w00000@x up to the
// writes acknowledged before it began, and no more users than were ever
// written; it returns its users.
func wantWrites(t *testing.T, file string, before, total int64) int64 {
	t.Helper()
	n, err := bolt.Verify(file)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(file), err)
	}
	if n < before+3000 || n > total+3000 {
		t.Fatalf("%s holds %d users; %d were acknowledged before it, %d in all", filepath.Base(file), n, before+3000, total+3000)
	}
	dir := t.TempDir()
	copyFile(t, file, filepath.Join(dir, bolt.FileName))
	st, err := bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range before {
		if _, err := st.Get(context.Background(), fmt.Sprintf("w%05d@x", i)); err != nil {
			t.Fatalf("%s: w%05d@x, acknowledged before the backup: %v", filepath.Base(file), i, err)
		}
	}
	return n
}

// TestBackupOnlyForAdmins: /backup and /export answer only --admin-allow
// networks, on top of --allow; /healthz and /readyz answer every allowed
// client.
func TestBackupOnlyForAdmins(t *testing.T) {
	httpAddr := freeAddr(t)
	startDirectory(t, t.TempDir(), "--http-addr", httpAddr, "--admin-allow", "192.0.2.0/24", "--secret", "s3")
	file := filepath.Join(t.TempDir(), "b.db")
	code, _, stderr := tohost(t, "backup", "--from", httpAddr, file)
	if code == 0 || !strings.Contains(stderr, "403") {
		t.Errorf("backup from outside --admin-allow: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(file); err == nil {
		t.Error("a refused backup left a file")
	}
	if code, _, stderr := tohost(t, "export", "--from", httpAddr, "-"); code == 0 || !strings.Contains(stderr, "403") {
		t.Errorf("export from outside --admin-allow: exit %d\n%s", code, stderr)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, "http://"+httpAddr+path); code != 200 {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.WriteFile(to, []byte(readFile(t, from)), 0o600); err != nil {
		t.Fatal(err)
	}
}
