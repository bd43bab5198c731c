// Package deploy holds no Go code: its test checks the files in this
// folder (the systemd units, the example environment files, the
// Dockerfile and the build script they share) against the binary they run.
package deploy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tohost/tohost/internal/testservices"
)

// binary is tohost as deploy/build.sh builds it, for the image and here.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tohost-deploy")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tohost")
	build := exec.Command("sh", "build.sh", binary)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "deploy/build.sh:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// units are the systemd units and the tohost command each runs.
var units = map[string]string{
	"tohost-directory.service": "directory",
	"tohost-proxy.service":     "proxy",
	"tohost-backend.service":   "backend",
}

const installedBinary = "/usr/local/bin/tohost"

// dockerfile is deploy/Dockerfile's instructions, continuation lines
// joined, comments dropped.
type instruction struct{ cmd, args string }

func dockerfile(t *testing.T) []instruction {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		cur += l
		cmd, args, _ := strings.Cut(cur, " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur = ""
	}
	return out
}

// TestDockerfileBuild: the image's Go stage builds with deploy/build.sh,
// on a Go at least as new as go.mod asks for, and what that script makes
// is a static binary without the build machine's paths that runs.
func TestDockerfileBuild(t *testing.T) {
	var builds []string
	var goImage string
	for _, in := range dockerfile(t) {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			t.Errorf("the Dockerfile runs go build itself (%q): it must go through deploy/build.sh", in.args)
		}
		if in.cmd == "RUN" && strings.Contains(in.args, "deploy/build.sh") {
			builds = append(builds, in.args)
		}
		if in.cmd == "FROM" && strings.HasPrefix(in.args, "golang:") && goImage == "" {
			goImage = in.args
		}
	}
	if len(builds) != 1 {
		t.Fatalf("the Dockerfile runs deploy/build.sh %d times, want once", len(builds))
	}
	// golang:1.26-bookworm AS build: Go 1.26.x, the newest patch release.
	m := regexp.MustCompile(`^golang:(\d+\.\d+)`).FindStringSubmatch(goImage)
	if m == nil {
		t.Fatalf("no golang:<version> builder stage (FROM %q)", goImage)
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if want == nil || string(want[1]) != m[1] {
		t.Errorf("the builder is Go %s, go.mod asks for %s", m[1], want[1])
	}

	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader: it would not start on a distroless/static image")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), root) {
		t.Errorf("the binary holds the build folder %s (no -trimpath?)", root)
	}
	out, err := exec.Command(binary, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "tohost ") {
		t.Errorf("tohost version: %v %q", err, out)
	}
}

// TestDockerfileCommand runs the image's ENTRYPOINT and CMD, with the
// listen addresses moved to free loopback ports and the data volume to a
// temporary folder: the flags parse, the daemon serves TCPAuth and LDAP,
// the ports it listens on are the EXPOSEd ones, its data goes to the
// VOLUME, and the image runs as a user other than root.
func TestDockerfileCommand(t *testing.T) {
	var entrypoint, command []string
	var exposed []string
	var volume, user string
	var copiedTo []string
	for _, in := range dockerfile(t) {
		switch in.cmd {
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: %v (use the JSON form: no shell in the image)", in.args, err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(in.args), &command); err != nil {
				t.Fatalf("CMD %s: %v", in.args, err)
			}
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "VOLUME":
			volume = in.args
		case "USER":
			user = in.args
		case "COPY":
			f := strings.Fields(in.args)
			copiedTo = append(copiedTo, f[len(f)-1])
		}
	}
	if len(entrypoint) != 1 || !slices.Contains(copiedTo, entrypoint[0]) {
		t.Errorf("ENTRYPOINT %q is not the binary the image copies (%q)", entrypoint, copiedTo)
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("the image runs as %q", user)
	}
	if len(command) == 0 || command[0] != "directory" {
		t.Fatalf("CMD %q does not run the directory", command)
	}

	args := slices.Clone(command)
	dataDir := filepath.Join(t.TempDir(), "data")
	var ports []string
	addrs := map[string]string{} // flag -> the test's address
	for i := 1; i < len(args); i++ {
		switch {
		case args[i] == "--data-dir" && i+1 < len(args):
			if args[i+1] != volume {
				t.Errorf("--data-dir %s is not the VOLUME %s", args[i+1], volume)
			}
			args[i+1] = dataDir
		case strings.HasPrefix(args[i], "0.0.0.0:"):
			ports = append(ports, strings.TrimPrefix(args[i], "0.0.0.0:"))
			args[i] = freeAddr(t)
			addrs[args[i-1]] = args[i]
		}
	}
	slices.Sort(ports)
	slices.Sort(exposed)
	if !slices.Equal(ports, exposed) {
		t.Errorf("CMD listens on ports %v, EXPOSE says %v", ports, exposed)
	}
	start(t, "directory", nil, args, addrs["--tcpauth-addr"], addrs["--ldap-addr"], addrs["--http-addr"])
	c := dial(t, addrs["--tcpauth-addr"])
	if got := c.request("ping"); got != "+OK pong" {
		t.Errorf("ping: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "tohost.db")); err != nil {
		t.Errorf("the store is not in --data-dir: %v", err)
	}
}

// TestSystemdUnits checks each unit runs the installed binary with its
// example environment file, and has systemd-analyze verify it (with
// ExecStart pointed at the built binary: verify wants it to exist) and
// rate its sandbox. systemd-analyze runs offline, without systemd running.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed: the units' syntax is not verified")
	}
	dir := t.TempDir()
	for name, cmd := range units {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, want := range []string{
			"\nExecStart=" + installedBinary + " " + cmd + "\n",
			"\nEnvironmentFile=-/etc/default/tohost-" + cmd + "\n",
			"\nExecReload=/bin/kill -HUP $MAINPID\n",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("%s has no line %q", name, strings.TrimSpace(want))
			}
		}
		if _, err := os.Stat(filepath.Join("default", "tohost-"+cmd)); err != nil {
			t.Errorf("%s: no example environment file: %v", name, err)
		}
		if analyze == "" {
			continue
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, installedBinary, binary)), 0o644); err != nil {
			t.Fatal(err)
		}
		// verify reports unknown keys and bad values, but exits 0 for
		// them: any output is a failure.
		out, err := exec.Command(analyze, "verify", path).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
		}
		// Exposure 2.5 of 10 at most ("OK"): the hardening must not be
		// dropped by accident.
		out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=25", path).CombinedOutput()
		if err != nil && strings.Contains(string(out), "unrecognized option") {
			t.Logf("this systemd-analyze cannot rate a unit offline (systemd 250 and later can): %s's sandbox is not rated", name)
		} else if err != nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", name, err, out)
		}
	}
}

// envFile reads an environment file: KEY=VALUE lines, # comments.
func envFile(t *testing.T, path string) [][2]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vars [][2]string
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || !strings.HasPrefix(k, "TOHOST_") {
			t.Errorf("%s:%d: not TOHOST_<FLAG>=value: %q", path, i+1, l)
			continue
		}
		if strings.ContainsAny(v, `"'$\`) {
			// systemd would unquote or unescape it; tohost would not
			// see what the line shows.
			t.Errorf("%s:%d: quotes, $ or \\ in %q", path, i+1, l)
		}
		vars = append(vars, [2]string{k, v})
	}
	return vars
}

// flags lists the flags `tohost cmd --help` shows.
func flags(t *testing.T, cmd string) map[string]bool {
	t.Helper()
	out, err := exec.Command(binary, cmd, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("tohost %s --help: %v\n%s", cmd, err, out)
	}
	fl := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		fl[m[1]] = true
	}
	return fl
}

// TestEnvironmentFiles runs the directory, a backend and a proxy from the
// three example environment files, as their units would, with only
// addresses, host names and paths changed: every variable names a flag of
// its command, and together they work: a user set through the directory
// (TLS, secret) gets a message over the backend's LMTP and reads it through
// the proxy's IMAP.
func TestEnvironmentFiles(t *testing.T) {
	tmp := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	addrs := map[string]string{} // "cmd KEY" -> the test's address
	files := map[string]string{} // example path -> the test's
	env := map[string][]string{}
	for _, cmd := range units {
		fl := flags(t, cmd)
		for _, kv := range envFile(t, filepath.Join("default", "tohost-"+cmd)) {
			k, v := kv[0], kv[1]
			flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "TOHOST_"), "_", "-"))
			if !fl[flag] {
				t.Errorf("default/tohost-%s: %s is no flag of tohost %s (--%s)", cmd, k, cmd, flag)
				continue
			}
			switch {
			case strings.HasSuffix(k, "_ADDR") && v != "":
				v = freeAddr(t)
				addrs[cmd+" "+k] = v
			case strings.HasSuffix(k, "_DIR"):
				v = filepath.Join(tmp, cmd+"-"+filepath.Base(v))
			case strings.HasPrefix(v, "/"):
				if files[v] == "" {
					files[v] = filepath.Join(tmp, filepath.Base(v))
					content := randomWord(t)
					switch {
					case strings.HasSuffix(v, ".pem"):
						content = certPEM // one self-signed certificate is every certificate and the CA
					case strings.HasSuffix(v, ".key"):
						content = keyPEM
					}
					if err := os.WriteFile(files[v], []byte(content+"\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				v = files[v]
			}
			env[cmd] = append(env[cmd], k+"="+v)
		}
	}
	if t.Failed() {
		return
	}
	// The backend's and the directory's names: loopback here.
	dirAddr := addrs["directory TOHOST_TCPAUTH_ADDR"]
	backendIMAP := addrs["backend TOHOST_IMAP_ADDR"]
	replace := func(cmd, key, value string) {
		for i, kv := range env[cmd] {
			if strings.HasPrefix(kv, key+"=") {
				env[cmd][i] = key + "=" + value
				return
			}
		}
		t.Fatalf("default/tohost-%s sets no %s", cmd, key)
	}
	replace("backend", "TOHOST_DIRECTORY", dirAddr)
	replace("backend", "TOHOST_NAME", "127.0.0.1")
	replace("proxy", "TOHOST_DIRECTORY", dirAddr)
	replace("proxy", "TOHOST_DEFAULT_BACKEND", "127.0.0.1")

	ready := func(cmd string) []string {
		var r []string
		for k, a := range addrs {
			if strings.HasPrefix(k, cmd+" ") {
				r = append(r, a)
			}
		}
		return r
	}
	start(t, "directory", env["directory"], []string{"directory"}, ready("directory")...)

	var secret, ca string
	for _, kv := range env["directory"] {
		if v, ok := strings.CutPrefix(kv, "TOHOST_SECRET_FILE="); ok {
			secret = v
		}
	}
	for _, kv := range env["proxy"] {
		if v, ok := strings.CutPrefix(kv, "TOHOST_TLS_CA="); ok {
			ca = v
		}
	}
	out, err := exec.Command(binary, "user", "--directory", dirAddr, "--tls-ca", ca, "--secret-file", secret,
		"set", "alice@example.com", "pw-a", "tohost="+backendIMAP).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "+OK") {
		t.Fatalf("tohost user set over TLS with the secret: %v\n%s", err, out)
	}

	start(t, "backend", env["backend"], []string{"backend"}, ready("backend")...)
	lmtp := dial(t, addrs["backend TOHOST_LMTP_ADDR"])
	lmtp.expect("", "220 ")
	for _, step := range [][2]string{{"LHLO test.example", "250 "}, {"MAIL FROM:<sender@example.org>", "250 "},
		{"RCPT TO:<alice@example.com>", "250 "}, {"DATA", "354 "}, {"Subject: deploy test\r\n\r\nhello\r\n.", "250 "}} {
		lmtp.expect(step[0], step[1])
	}

	start(t, "proxy", env["proxy"], []string{"proxy"}, ready("proxy")...)
	imap := dial(t, addrs["proxy TOHOST_IMAP_ADDR"])
	imap.expect("", "* OK")
	imap.expect("a LOGIN alice@example.com pw-a", "a OK")
	if lines := imap.until("b SELECT INBOX", "b OK"); !slices.Contains(lines, "* 1 EXISTS") {
		t.Errorf("alice's INBOX through the proxy: %q", lines)
	}
}

// proc is a running tohost.
type proc struct {
	cmd *exec.Cmd
	log *testservices.Buffer
}

// start runs tohost args with env (TOHOST_ variables; none other of the
// test's) and waits until every address in ready accepts connections.
func start(t *testing.T, name string, env, args []string, ready ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary, args...), log: new(testservices.Buffer)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOHOST_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.log)
		}
	})
	for _, addr := range ready {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			select {
			case <-exited:
				t.Fatalf("%s exited: %v\n%s", name, p.cmd.ProcessState, p.log)
			default:
			}
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not listen on %s: %v\n%s", name, addr, err, p.log)
			}
		}
	}
	return p
}

// client is a line protocol connection.
type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// request sends req (unless empty) and returns the next line.
func (c *client) request(req string) string {
	c.t.Helper()
	if req != "" {
		if _, err := fmt.Fprintf(c.nc, "%s\r\n", req); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.line()
}

// expect sends req and fails unless the last line of the reply (lines
// with a "250-" style continuation skipped) starts with prefix.
func (c *client) expect(req, prefix string) {
	c.t.Helper()
	l := c.request(req)
	for len(l) > 3 && l[3] == '-' {
		l = c.line()
	}
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("%q: got %q, want %s...", req, l, prefix)
	}
}

// until sends req and returns the lines up to the one starting with last,
// failing at a tagged line that does not.
func (c *client) until(req, last string) []string {
	c.t.Helper()
	tag, _, _ := strings.Cut(req, " ")
	var lines []string
	for l := c.request(req); ; l = c.line() {
		lines = append(lines, l)
		if strings.HasPrefix(l, last) {
			return lines
		}
		if strings.HasPrefix(l, tag+" ") {
			c.t.Fatalf("%q: %q", req, lines)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randomWord(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// selfSigned makes a certificate for 127.0.0.1 and localhost, and its key.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tohost deploy test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}
