package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// The IMAP login replayed on the backend: greeting, STARTTLS when
// configured, the client's address in an ID command (Dovecot's
// x-originating-ip and friends) when configured, LOGIN, and the backend's
// capabilities for the client.

// maxBackendResponse bounds one backend response before the relay
// starts, literals included.
const maxBackendResponse = 64 << 10

// backendBuffer is the backend reader's size, and so its longest line.
const backendBuffer = 16 << 10

// imapHandover is a backend connection logged in as the user: what the
// client is to be told (untagged lines, then the tagged OK with the
// client's tag put before ok), and the connection with what was read of
// it past that.
type imapHandover struct {
	conn     net.Conn
	r        *bufio.Reader
	untagged []string // whole lines, CR LF included
	ok       string   // the tagged OK without its tag: " OK ...\r\n"
}

// imapBackend is a backend connection during the replayed login.
type imapBackend struct {
	c    net.Conn
	r    *bufio.Reader
	caps map[string]bool // nil: not known
	n    int             // commands sent, for tags
}

// errBackendRefused: the backend said NO to a login the directory accepted.
var errBackendRefused = errors.New("backend refused the login")

// imapBackendLogin connects to route, logs in as user and returns the
// connection ready for the relay. Errors wrap ErrTemporary.
func (p *Proxy) imapBackendLogin(ctx context.Context, s *session, route *Route, user, pass string) (*imapHandover, error) {
	c, err := p.dialBackend(ctx, route, s.c) // counts its own failures
	if err != nil {
		return nil, err
	}
	// The dial deadline bounds the whole login; the end of the drain time
	// at shutdown cuts it short.
	cut := context.AfterFunc(ctx, func() { c.Close() })
	b := &imapBackend{c: c, r: bufio.NewReaderSize(c, backendBuffer)}
	h, counted, err := p.imapBackendSteps(ctx, s, *route, b, user, pass)
	if !cut() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		b.c.Close()
		if !counted {
			p.cfg.Metrics.backendFailed()
		}
		return nil, fmt.Errorf("%w: backend %s: %w", ErrTemporary, route.Addr, err)
	}
	return h, nil
}

// imapBackendSteps runs the login on b. counted says the failure was
// counted already (a TLS handshake that failed).
func (p *Proxy) imapBackendSteps(ctx context.Context, s *session, route Route, b *imapBackend, user, pass string) (_ *imapHandover, counted bool, _ error) {
	greeting, err := b.readResponse()
	if err != nil {
		return nil, false, fmt.Errorf("greeting: %w", err)
	}
	if !hasPrefixFold(greeting, "* OK") {
		return nil, false, fmt.Errorf("greeting: %q", strings.TrimSpace(greeting))
	}
	b.learnCaps(greeting)

	if p.cfg.BackendTLS == BackendStartTLS {
		if _, err := b.simple("STARTTLS"); err != nil {
			return nil, false, fmt.Errorf("STARTTLS: %w", err)
		}
		if b.r.Buffered() > 0 {
			return nil, false, errors.New("STARTTLS: data before the handshake")
		}
		tc, err := p.startTLS(ctx, b.c, route)
		if err != nil {
			return nil, true, err
		}
		b.c, b.r, b.caps = tc, bufio.NewReaderSize(tc, backendBuffer), nil
	}

	if p.cfg.ForwardClientIP {
		if _, err := b.simple(imapForwardID(s)); err != nil {
			// A backend that does not take ID (or not from us) still
			// serves the user; it only logs the proxy's address.
			var st *imapStatusError
			if !errors.As(err, &st) {
				return nil, false, fmt.Errorf("ID: %w", err)
			}
			s.log.Warn("backend refused the client's address in ID", "backend", route.Addr, "reply", st.line)
		}
	}

	untagged, tagged, err := b.login(user, pass)
	if err != nil {
		return nil, false, fmt.Errorf("LOGIN: %w", err)
	}
	tag, status, text := splitTagged(tagged)
	if status != "OK" {
		return nil, false, fmt.Errorf("%w: %s", errBackendRefused, strings.TrimSpace(tagged))
	}
	h := &imapHandover{untagged: untagged, ok: tagged[len(tag):]}
	if !hasPrefixFold(text, "[CAPABILITY ") && !hasUntaggedCaps(untagged) {
		// The client must learn the backend's capabilities, not the
		// proxy's: ask, and pass the answer on before the OK.
		more, err := b.simple("CAPABILITY")
		if err != nil {
			return nil, false, fmt.Errorf("CAPABILITY: %w", err)
		}
		h.untagged = append(h.untagged, more...)
	}
	h.conn, h.r = b.c, b.r
	return h, false, nil
}

// imapForwardID is the ID command that tells a Dovecot backend (in its
// login_trusted_networks) who the client is and where it connected.
func imapForwardID(s *session) string {
	cport := strconv.Itoa(clientAddr(s.c).Port)
	lip, lport := "", ""
	if ap, err := netip.ParseAddrPort(s.c.LocalAddr().String()); err == nil {
		lip, lport = ap.Addr().Unmap().String(), strconv.Itoa(int(ap.Port()))
	}
	return fmt.Sprintf(`ID ("x-originating-ip" "%s" "x-originating-port" "%s" "x-connected-ip" "%s" "x-connected-port" "%s")`,
		s.ip.Unmap(), cport, lip, lport)
}

// imapStatusError is a tagged NO or BAD.
type imapStatusError struct{ line string }

func (e *imapStatusError) Error() string { return strings.TrimSpace(e.line) }

// simple sends cmd with the next tag and reads the response up to the
// tagged line, which must be OK. It returns the untagged lines.
func (b *imapBackend) simple(cmd string) ([]string, error) {
	tag := b.nextTag()
	if _, err := io.WriteString(b.c, tag+" "+cmd+"\r\n"); err != nil {
		return nil, err
	}
	untagged, tagged, err := b.readTagged(tag, nil)
	if err != nil {
		return nil, err
	}
	if _, status, _ := splitTagged(tagged); status != "OK" {
		return nil, &imapStatusError{tagged}
	}
	return untagged, nil
}

// login sends LOGIN user pass, each as a quoted string where that is safe,
// else as a literal: non-synchronising when the backend announced
// LITERAL+ (or LITERAL- and it is small), else after the backend's
// continuation request. It returns the untagged lines and the tagged one.
func (b *imapBackend) login(user, pass string) ([]string, string, error) {
	tag := b.nextTag()
	var untagged []string
	var buf strings.Builder
	buf.WriteString(tag + " LOGIN")
	for _, a := range []string{user, pass} {
		buf.WriteByte(' ')
		if q, err := imapQuote(a); err == nil {
			buf.WriteString(q)
			continue
		}
		if b.caps["LITERAL+"] || b.caps["LITERAL-"] && len(a) <= 4096 {
			fmt.Fprintf(&buf, "{%d+}\r\n%s", len(a), a)
			continue
		}
		fmt.Fprintf(&buf, "{%d}\r\n", len(a))
		if _, err := io.WriteString(b.c, buf.String()); err != nil {
			return nil, "", err
		}
		buf.Reset()
		for cont := false; !cont; {
			line, err := b.readResponse()
			switch {
			case err != nil:
				return nil, "", err
			case strings.HasPrefix(line, "+"):
				cont = true
			case strings.HasPrefix(line, "* "):
				untagged = append(untagged, line)
			case strings.HasPrefix(line, tag+" "):
				return untagged, line, nil // the literal refused
			default:
				return nil, "", fmt.Errorf("unexpected %q", strings.TrimSpace(line))
			}
		}
		buf.WriteString(a)
	}
	buf.WriteString("\r\n")
	if _, err := io.WriteString(b.c, buf.String()); err != nil {
		return nil, "", err
	}
	return b.readTagged(tag, untagged)
}

func (b *imapBackend) nextTag() string {
	b.n++
	return "P" + strconv.Itoa(b.n)
}

// readTagged reads responses up to tag's, appending the untagged ones.
func (b *imapBackend) readTagged(tag string, untagged []string) ([]string, string, error) {
	for {
		line, err := b.readResponse()
		switch {
		case err != nil:
			return nil, "", err
		case strings.HasPrefix(line, tag+" "):
			return untagged, line, nil
		case strings.HasPrefix(line, "* "):
			b.learnCaps(line)
			untagged = append(untagged, line)
		default:
			return nil, "", fmt.Errorf("unexpected %q", strings.TrimSpace(line))
		}
	}
}

// readResponse reads one response: a line, and when it ends with a
// literal, the literal and the lines after it. It is returned as read,
// ending with CR LF.
func (b *imapBackend) readResponse() (string, error) {
	var out strings.Builder
	for {
		line, err := b.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", errors.New("response line too long")
		}
		if err != nil {
			return "", err
		}
		out.Write(line)
		if out.Len() > maxBackendResponse {
			return "", errors.New("response too long")
		}
		n, ok := trailingLiteral(line)
		if !ok {
			return out.String(), nil
		}
		if n > int64(maxBackendResponse-out.Len()) {
			return "", errors.New("response too long")
		}
		if _, err := io.CopyN(&out, b.r, n); err != nil {
			return "", err
		}
	}
}

// trailingLiteral reports whether a response line ends with {n} (or
// {n+}) before its CR LF, and n.
func trailingLiteral(line []byte) (int64, bool) {
	s := strings.TrimRight(string(line), "\r\n")
	if !strings.HasSuffix(s, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(s, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(s[i+1:len(s)-1], "+"), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// learnCaps records the capabilities a response line lists, untagged
// (* CAPABILITY ...) or in a response code ([CAPABILITY ...]).
func (b *imapBackend) learnCaps(line string) {
	s := strings.TrimRight(line, "\r\n")
	var list string
	if i := indexFold(s, "[CAPABILITY "); i >= 0 {
		list = s[i+len("[CAPABILITY "):]
		if j := strings.IndexByte(list, ']'); j >= 0 {
			list = list[:j]
		}
	} else if hasPrefixFold(s, "* CAPABILITY ") {
		list = s[len("* CAPABILITY "):]
	} else {
		return
	}
	b.caps = make(map[string]bool)
	for _, c := range strings.Fields(list) {
		b.caps[strings.ToUpper(c)] = true
	}
}

// splitTagged splits a tagged response into its tag, its status (upper
// case) and the rest.
func splitTagged(line string) (tag, status, text string) {
	line = strings.TrimRight(line, "\r\n")
	tag, rest, _ := strings.Cut(line, " ")
	status, text, _ = strings.Cut(rest, " ")
	return tag, strings.ToUpper(status), text
}

func hasUntaggedCaps(lines []string) bool {
	for _, l := range lines {
		if hasPrefixFold(l, "* CAPABILITY ") {
			return true
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// indexFold is strings.Index ignoring ASCII case.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}
