package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tohost/tohost/internal/testservices"
)

// TestClusterCommand runs `tohost cluster`, reads each demo user's
// welcome message through the proxy, checks it is in that user's backend's
// Maildir only, then stops the cluster with SIGINT and starts it again on
// the same folder: same users, same mail, no second welcome message.
func TestClusterCommand(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed")
	}
	dir := t.TempDir()
	offset := clusterPortOffset(t)
	imap := fmt.Sprintf("127.0.0.1:%d", 1143+offset)
	backendDirs := map[string]string{"127.0.0.2": "backend1", "127.0.0.3": "backend2"}

	fetch := func(user, pass, url string, extra ...string) string {
		t.Helper()
		args := append([]string{"--silent", "--show-error", "--max-time", "60", "-u", user + ":" + pass, url}, extra...)
		out, err := exec.Command(curl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", url, err, out)
		}
		return string(out)
	}

	var first map[string][2]string
	for run := 1; run <= 2; run++ {
		c := startCluster(t, dir, offset)
		users := c.users
		if len(users) != 2 {
			t.Fatalf("run %d: %d demo users printed, want 2:\n%s", run, len(users), c.out)
		}
		if run == 1 {
			first = users
		} else if fmt.Sprint(users) != fmt.Sprint(first) {
			t.Fatalf("second start: users %v, first start had %v", users, first)
		}
		for name, u := range users {
			pass, backend := u[0], u[1]
			msg := fetch(name, pass, "imap://"+imap+"/INBOX;UID=1")
			if !strings.Contains(msg, "Subject: Welcome to tohost") || !strings.Contains(msg, "backend "+backend) {
				t.Fatalf("run %d: %s's message 1:\n%s", run, name, msg)
			}
			if got := fetch(name, pass, "imap://"+imap+"/INBOX", "-X", "SEARCH ALL"); strings.TrimSpace(got) != "* SEARCH 1" {
				t.Fatalf("run %d: %s's INBOX holds %q, want one message", run, name, got)
			}
			local, _, _ := strings.Cut(name, "@")
			for b, sub := range backendDirs {
				n := countMail(t, filepath.Join(dir, sub, "example.com", local))
				if want := map[bool]int{true: 1}[b == backend]; n != want {
					t.Fatalf("run %d: %d messages of %s in %s's Maildir, want %d", run, n, name, b, want)
				}
			}
		}
		c.stop(t)
	}
	info, err := os.Stat(filepath.Join(dir, "demo-users.txt"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("demo-users.txt: %v %v", info, err)
	}
}

type clusterProc struct {
	cmd   *exec.Cmd
	out   *testservices.Buffer
	users map[string][2]string // name: password, backend
	exit  chan error
}

// startCluster runs `tohost cluster` and reads its instructions up to
// "ready".
func startCluster(t *testing.T, dir string, offset int) *clusterProc {
	t.Helper()
	c := &clusterProc{out: new(testservices.Buffer), users: map[string][2]string{}, exit: make(chan error, 1)}
	c.cmd = exec.Command(binary, "cluster", "--data-dir", dir, "--port-offset", fmt.Sprint(offset))
	logs := new(testservices.Buffer)
	c.cmd.Stderr = logs
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			line := sc.Text()
			c.out.Write([]byte(line + "\n"))
			if f := strings.Fields(line); len(f) == 6 && f[0] == "user" && f[2] == "password" && f[4] == "backend" {
				c.users[f[1]] = [2]string{f[3], f[5]}
			}
			if line == "ready" {
				ok = true
				break
			}
		}
		ready <- ok
		io.Copy(io.Discard, stdout)
		c.exit <- c.cmd.Wait()
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("cluster exited before ready: %v\n%s\n%s", <-c.exit, c.out, logs)
		}
	case <-time.After(2 * time.Minute): // hang guard
		c.cmd.Process.Kill()
		t.Fatalf("cluster not ready:\n%s\n%s", c.out, logs)
	}
	t.Cleanup(func() { c.cmd.Process.Kill() })
	return c
}

// stop sends SIGINT and waits for a clean exit.
func (c *clusterProc) stop(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.exit:
		if err != nil {
			t.Fatalf("cluster exit: %v", err)
		}
	case <-time.After(2 * time.Minute): // hang guard
		c.cmd.Process.Kill()
		t.Fatal("cluster did not stop on SIGINT")
	}
}

// countMail counts the messages of a Maildir (0 when it does not exist).
func countMail(t *testing.T, maildir string) int {
	t.Helper()
	n := 0
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(maildir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		n += len(entries)
	}
	return n
}

// clusterPortOffset finds an offset at which every port of the cluster is
// free just now.
func clusterPortOffset(t *testing.T) int {
	t.Helper()
	ports := map[string][]int{
		"127.0.0.1": {4020, 1143, 1110, 1587, 1025},
		"127.0.0.2": {2143, 2110, 2424, 2525, 2587},
		"127.0.0.3": {2143, 2110, 2424, 2525, 2587},
	}
	for try := 0; try < 50; try++ {
		offset := 20000 + rand.IntN(40000)
		var lns []net.Listener
		ok := true
		for host, ps := range ports {
			for _, p := range ps {
				ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", host, p+offset))
				if err != nil {
					ok = false
					break
				}
				lns = append(lns, ln)
			}
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return offset
		}
	}
	t.Fatal("no free port range for the cluster")
	return 0
}
