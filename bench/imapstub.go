package bench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
)

// ModeIMAPServer serves the IMAP stub (ServeIMAPStub).
const ModeIMAPServer = "imap-server"

// stubCaps is what the stub announces: enough for a proxy to log in
// without asking for CAPABILITY again.
const stubCaps = "IMAP4rev1 LITERAL+ ID IDLE"

// ServeIMAPStub is a minimal IMAP backend for holding many idle sessions,
// where a real server would need a process or a mailbox per session: it
// greets, answers LOGIN (any user, any password) with OK, CAPABILITY, ID,
// NOOP and LOGOUT as a server would, and anything else with BAD. A logged-in
// session costs it one goroutine and a 1 KiB read buffer, and it sends
// nothing unasked, so idle sessions stay idle. Literals ({n} and {n+}) in a
// command are read and skipped.
//
// It serves until ctx is done, then closes the listener and every
// connection and returns nil, like ServeEcho.
func ServeIMAPStub(ctx context.Context, ln net.Listener) error {
	return serveConns(ctx, ln, serveIMAPStubConn)
}

// stubMaxLine bounds a command line (literals aside).
const stubMaxLine = 1024

func serveIMAPStubConn(c net.Conn) {
	r := bufio.NewReaderSize(c, stubMaxLine)
	if _, err := io.WriteString(c, "* OK [CAPABILITY "+stubCaps+"] tohost bench IMAP stub ready\r\n"); err != nil {
		return
	}
	for {
		line, err := stubCommand(c, r)
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				io.WriteString(c, "* BYE line too long\r\n")
			}
			return
		}
		tag, rest, _ := strings.Cut(line, " ")
		cmd, _, _ := strings.Cut(rest, " ")
		var reply string
		switch strings.ToUpper(cmd) {
		case "LOGIN":
			reply = tag + " OK [CAPABILITY " + stubCaps + "] Logged in\r\n"
		case "CAPABILITY":
			reply = "* CAPABILITY " + stubCaps + "\r\n" + tag + " OK CAPABILITY completed\r\n"
		case "ID":
			reply = "* ID NIL\r\n" + tag + " OK ID completed\r\n"
		case "NOOP":
			reply = tag + " OK NOOP completed\r\n"
		case "LOGOUT":
			io.WriteString(c, "* BYE Logging out\r\n"+tag+" OK LOGOUT completed\r\n")
			return
		default:
			reply = tag + " BAD Not supported by the stub\r\n"
		}
		if tag == "" || rest == "" {
			reply = "* BAD Missing tag or command\r\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

// stubCommand reads one command without its CR LF; the literals in it are
// read and left out. A synchronising literal gets its continuation request.
func stubCommand(c net.Conn, r *bufio.Reader) (string, error) {
	var cmd strings.Builder
	for range 64 { // literals in one command
		b, err := r.ReadSlice('\n')
		if err != nil {
			return "", err
		}
		line := strings.TrimRight(string(b), "\r\n")
		n, plus, ok := stubLiteral(line)
		if !ok {
			cmd.WriteString(line)
			return cmd.String(), nil
		}
		cmd.WriteString(line[:strings.LastIndexByte(line, '{')])
		cmd.WriteString("{}")
		if !plus {
			if _, err := io.WriteString(c, "+ Ready for literal data\r\n"); err != nil {
				return "", err
			}
		}
		if _, err := r.Discard(n); err != nil {
			return "", err
		}
	}
	return "", bufio.ErrBufferFull
}

// stubLiteral reports whether line ends with {n} or {n+} (n <= 64 KiB).
func stubLiteral(line string) (n int, plus, ok bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, false
	}
	s := line[i+1 : len(line)-1]
	s, plus = strings.CutSuffix(s, "+")
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 64<<10 {
		return 0, false, false
	}
	return n, plus, true
}
