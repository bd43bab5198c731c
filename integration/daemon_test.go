package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// openConns reads tohost_connections_open from /metrics.
func openConns(t *testing.T, httpAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "tohost_connections_open "); ok {
			return v
		}
	}
	t.Fatal("no tohost_connections_open in /metrics")
	return ""
}

// TestOneCapForEveryListener: --max-conns counts TCPAuth and LDAP
// connections together; one over it is refused politely on either
// protocol, and /healthz still answers.
func TestOneCapForEveryListener(t *testing.T) {
	ldapAddr, httpAddr := freeAddr(t), freeAddr(t)
	d := startDirectory(t, t.TempDir(), "--ldap-addr", ldapAddr, "--http-addr", httpAddr,
		"--max-conns", "3", "--ldap-anonymous-read")
	// The start-up probe's connection goes away by itself; wait for it
	// (the deadline is a hang guard).
	for deadline := time.Now().Add(20 * time.Second); openConns(t, httpAddr) != "0"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the start-up probe's connection is still counted")
		}
	}
	c := dial(t, d.addr)
	c.expect("ping", "+OK pong")
	var ls []*ldap.Conn
	for range 2 {
		l, err := ldap.DialURL("ldap://" + ldapAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := l.WhoAmI(nil); err != nil {
			t.Fatalf("LDAP under the cap: %v", err)
		}
		ls = append(ls, l)
	}
	if got := openConns(t, httpAddr); got != "3" {
		t.Fatalf("tohost_connections_open = %s, want 3", got)
	}
	over := dial(t, d.addr)
	if got := over.line(); got != "-DEAD too many connections" {
		t.Fatalf("TCPAuth over the cap: %q", got)
	}
	l, err := ldap.DialURL("ldap://" + ldapAddr)
	if err == nil {
		defer l.Close()
		if _, err := l.WhoAmI(nil); err == nil {
			t.Fatal("LDAP over the cap was served")
		}
	}
	resp, err := http.Get("http://" + httpAddr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz with every slot taken: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestAllowCoversLDAP: a client outside --allow cannot use LDAP either,
// not even to bind as the admin.
func TestAllowCoversLDAP(t *testing.T) {
	ldapAddr := freeAddr(t)
	startDirectory(t, t.TempDir(), "--ldap-addr", ldapAddr, "--allow", "192.0.2.0/24",
		"--ldap-admin-password", "admin-pw")
	l, err := ldap.DialURL("ldap://" + ldapAddr)
	if err != nil {
		return // refused at once: fine
	}
	defer l.Close()
	if err := l.Bind("cn=admin,dc=tohost", "admin-pw"); err == nil {
		t.Fatal("an address outside --allow bound as the LDAP admin")
	}
}

// TestBadListenerStartsNothing: a listener that cannot be opened stops the
// start before anything serves: no "started" line, nothing listening, and
// the store is released for the next start.
func TestBadListenerStartsNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dataDir, tcpauthAddr := t.TempDir(), freeAddr(t)
	cmd := exec.Command(binary, "directory", "--data-dir", dataDir, "--tcpauth-addr", tcpauthAddr,
		"--http-addr", "", "--ldap-addr", taken.Addr().String(), "--password-scheme", "SSHA")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--ldap-addr") {
		t.Fatalf("exit %v, output %s: want a failure naming --ldap-addr", err, out)
	}
	if strings.Contains(string(out), "started") {
		t.Fatalf("logged a start although a listener failed:\n%s", out)
	}
	if c, err := net.Dial("tcp", tcpauthAddr); err == nil {
		c.Close()
		t.Fatal("TCPAuth still listening after a failed start")
	}
	startDirectory(t, dataDir) // the store was closed: it opens again
}

// TestStopDrainsAndExits: SIGTERM lets a request in progress finish,
// then the directory exits 0 and says so.
func TestStopDrainsAndExits(t *testing.T) {
	d := startDirectory(t, t.TempDir(), "--shutdown-timeout", "20s")
	c := dial(t, d.addr)
	c.expect("set a@x pw", "+OK a@x added to database")
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The idle connection is told to go: end of stream, no reset.
	if b, err := io.ReadAll(c.r); err != nil || len(b) != 0 {
		t.Fatalf("idle connection at shutdown: %q %v", b, err)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, d.log)
	}
	if !strings.Contains(d.log.String(), "directory stopped") {
		t.Fatalf("no stop line:\n%s", d.log)
	}
}
