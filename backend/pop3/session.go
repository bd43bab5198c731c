package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tohost/tohost/backend/home"
	"github.com/tohost/tohost/backend/maildir"
	"github.com/tohost/tohost/internal/listen"
	"github.com/tohost/tohost/protocol/authent"
	"github.com/tohost/tohost/protocol/saslserver"
)

// Replies.
const (
	replyAuthFailed  = "-ERR [AUTH] Authentication failed.\r\n"
	replyTemp        = "-ERR [SYS/TEMP] Temporary failure, try again later.\r\n"
	replyElsewhere   = "-ERR [SYS/TEMP] Mailbox not on this server.\r\n"
	replyInUse       = "-ERR [IN-USE] Mailbox in use by another session.\r\n"
	replyTooLong     = "-ERR Line too long.\r\n"
	replyTooManyBad  = "-ERR Too many invalid commands.\r\n"
	replyTooManyAuth = "-ERR [AUTH] Too many failed logins.\r\n"
	replyShutdown    = "-ERR [SYS/TEMP] Server shutting down.\r\n"
	replyIdle        = "-ERR Autologout: idle for too long.\r\n"
	replyNoMessage   = "-ERR No such message.\r\n"
	replyCancelled   = "-ERR Authentication cancelled.\r\n"
	replyBadBase64   = "-ERR Invalid base64 data.\r\n"
	replyBadSASL     = "-ERR Invalid authentication data.\r\n"
)

// closeWait bounds how long a connection closed after a last reply is
// drained (listen.CloseGracefully).
const closeWait = 2 * time.Second

var (
	errLineTooLong = errors.New("line too long")
	errStopping    = errors.New("server shutting down")
)

// session is one client connection.
type session struct {
	srv  *Server
	raw  net.Conn // as accepted: the shutdown sets its read deadline
	c    net.Conn // raw, or TLS over it after STLS
	r    *bufio.Reader
	w    *bufio.Writer
	ip   netip.Addr // the client: the peer, or what a trusted XCLIENT says
	port int
	peer netip.Addr // the peer, who may be a trusted proxy
	log  *slog.Logger

	mu       sync.Mutex
	stopping bool

	user     string // from USER, until PASS
	hasUser  bool
	failures int // failed logins
	bad      int // refused commands

	// TRANSACTION state, after a login.
	folder *maildir.Folder
	unlock func()
	msgs   []*message
}

// message is one message of the maildrop, numbered from 1 by its index.
type message struct {
	maildir.Message
	deleted   bool
	retrieved bool
	size      int64 // as sent, CR LF endings; -1: not yet known
}

func (s *Server) newSession(c net.Conn) *session {
	return &session{srv: s, raw: c, c: c}
}

// serve runs the session and closes the connection.
func (s *session) serve(ctx context.Context) {
	cfg := &s.srv.cfg
	// PeerIP may read a PROXY header: here, not in the accept loop.
	s.peer = listen.PeerIP(s.c)
	s.ip = s.peer
	if a, ok := s.c.RemoteAddr().(*net.TCPAddr); ok {
		s.port = a.Port
	}
	s.log = s.srv.log.With("client", s.ip.String())
	s.r = bufio.NewReaderSize(s.c, MaxLine+2) // a whole line of MaxLine and its CR LF
	s.w = bufio.NewWriterSize(s.c, 32<<10)
	if s.srv.sessionEnded != nil {
		defer s.srv.sessionEnded() // last: after the unlock, the close and the metrics
	}
	cfg.Metrics.sessionOpened()
	defer cfg.Metrics.sessionClosed()
	graceful := false
	defer func() {
		s.releaseLock()
		if graceful {
			listen.CloseGracefully(s.c, closeWait)
		} else {
			s.c.Close()
		}
	}()
	s.write("+OK " + cfg.Hostname + " POP3 ready.\r\n")
	for {
		line, err := s.readLine()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, errLineTooLong):
				s.write(replyTooLong)
				s.flush()
				graceful = true
			case errors.Is(err, errStopping) || s.isStopping():
				s.write(replyShutdown)
				s.flush()
			case errors.As(err, &ne) && ne.Timeout():
				s.log.Info("idle timeout", "user", s.user)
				s.write(replyIdle)
				s.flush()
			}
			return
		}
		if s.command(ctx, line) {
			s.flush()
			graceful = true
			return
		}
	}
}

// stop makes the session end before its next command.
func (s *session) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	s.raw.SetReadDeadline(time.Unix(1, 0))
}

func (s *session) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// readLine reads one line, without its CR LF, within the idle timeout.
// Replies still buffered are sent first unless the next command is
// already in (PIPELINING).
func (s *session) readLine() (string, error) {
	if buf, _ := s.r.Peek(s.r.Buffered()); !bytes.Contains(buf, []byte{'\n'}) {
		if err := s.flush(); err != nil {
			return "", err
		}
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return "", errStopping
	}
	s.c.SetReadDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
	s.mu.Unlock()
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > MaxLine+2 {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	n := len(line) - 1
	if n > 0 && line[n-1] == '\r' {
		n--
	}
	if n > MaxLine {
		return "", errLineTooLong
	}
	return string(line[:n]), nil
}

// write buffers a reply; a write error shows at the next flush.
func (s *session) write(text string) {
	s.w.WriteString(text)
}

func (s *session) flush() error {
	if s.w.Buffered() == 0 {
		return nil
	}
	s.c.SetWriteDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
	return s.w.Flush()
}

// refuse answers a command refused as unknown, out of place or malformed,
// and reports whether that was one too many: the connection is over.
func (s *session) refuse(reply string) bool {
	if s.bad++; s.bad >= maxBadCommands {
		s.write(replyTooManyBad)
		return true
	}
	s.write(reply)
	return false
}

// command runs one command line and reports whether the session is over.
func (s *session) command(ctx context.Context, line string) (done bool) {
	cmd, err := parseCommand(line)
	if err != nil {
		if line == "" {
			return s.refuse("-ERR Empty command.\r\n")
		}
		return s.refuse("-ERR Invalid command.\r\n")
	}
	if s.folder == nil {
		return s.authorization(ctx, cmd)
	}
	return s.transaction(cmd)
}

// authorization runs a command before login.
func (s *session) authorization(ctx context.Context, cmd command) bool {
	switch cmd.Name {
	case "CAPA":
		s.capa()
	case "QUIT":
		s.write("+OK Bye.\r\n")
		return true
	case "STLS":
		switch {
		case s.isTLS():
			return s.refuse("-ERR Already using TLS.\r\n")
		case s.srv.cfg.TLS == nil:
			return s.refuse("-ERR STLS not available.\r\n")
		case cmd.Arg != "":
			return s.refuse("-ERR STLS takes no argument.\r\n")
		}
		return s.startTLS()
	case "XCLIENT":
		return s.xclient(cmd.Arg)
	case "USER":
		s.hasUser = false
		if !saslserver.ValidCredential(cmd.Arg) {
			return s.refuse("-ERR Invalid user name.\r\n")
		}
		s.user, s.hasUser = cmd.Arg, true
		s.write("+OK\r\n")
	case "PASS":
		if !s.hasUser {
			return s.refuse("-ERR No user name given: USER first.\r\n")
		}
		s.hasUser = false
		if !saslserver.ValidCredential(cmd.Arg) {
			return s.refuse("-ERR Invalid password.\r\n")
		}
		return s.login(ctx, s.user, cmd.Arg)
	case "AUTH":
		s.hasUser = false
		if cmd.Arg == "" { // list the mechanisms, as servers before RFC 5034 did
			s.write("+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n")
			return false
		}
		user, pass, reply, err := s.sasl(cmd.Arg)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				s.write(replyTooLong)
			}
			return true
		}
		if reply != "" {
			return s.refuse(reply)
		}
		s.user = user
		return s.login(ctx, user, pass)
	case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
		return s.refuse("-ERR Not logged in.\r\n")
	default:
		return s.refuse("-ERR Unknown command.\r\n")
	}
	return false
}

// capa answers CAPA (RFC 2449).
func (s *session) capa() {
	var b strings.Builder
	b.WriteString("+OK Capability list follows.\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n")
	if s.folder == nil {
		b.WriteString("USER\r\nSASL PLAIN LOGIN\r\n")
		if s.srv.cfg.TLS != nil && !s.isTLS() {
			b.WriteString("STLS\r\n")
		}
		if s.trusted() {
			b.WriteString("XCLIENT\r\n")
		}
	}
	b.WriteString(".\r\n")
	s.write(b.String())
}

func (s *session) isTLS() bool {
	_, ok := s.c.(*tls.Conn)
	return ok
}

// trusted reports whether the peer may send XCLIENT.
func (s *session) trusted() bool { return listen.Contains(s.srv.cfg.TrustedProxies, s.peer) }

// startTLS answers STLS and runs the handshake. Input the client sent
// before the handshake is refused (RFC 2595: a command injected before
// TLS is an attack); what USER said before is forgotten.
func (s *session) startTLS() bool {
	s.write("+OK Begin TLS negotiation.\r\n")
	if s.flush() != nil {
		return true
	}
	if s.r.Buffered() > 0 {
		s.log.Info("STLS: data before the handshake")
		return true
	}
	tc := tls.Server(s.c, s.srv.cfg.TLS)
	tc.SetDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
	if err := tc.Handshake(); err != nil {
		s.log.Info("STLS failed", "err", err)
		return true
	}
	tc.SetDeadline(time.Time{})
	s.c = tc
	s.r.Reset(tc)
	s.w.Reset(tc)
	s.user, s.hasUser = "", false
	return false
}

// xclient takes the client's address from a trusted proxy: XCLIENT
// ADDR=<ip> PORT=<port>, other attributes ignored (Dovecot's form; an
// address may carry Postfix's IPV6: prefix).
func (s *session) xclient(arg string) bool {
	if !s.trusted() {
		s.log.Warn("XCLIENT from an untrusted peer refused")
		return s.refuse("-ERR XCLIENT not allowed.\r\n")
	}
	ip, port := s.ip, s.port
	for _, a := range strings.Fields(arg) {
		k, v, _ := strings.Cut(a, "=")
		switch strings.ToUpper(k) {
		case "ADDR":
			if len(v) > 5 && strings.EqualFold(v[:5], "IPV6:") {
				v = v[5:]
			}
			addr, err := netip.ParseAddr(v)
			if err != nil || addr.Zone() != "" {
				return s.refuse("-ERR Invalid XCLIENT ADDR.\r\n")
			}
			ip = addr.Unmap()
		case "PORT":
			n, ok := parseNumber(v)
			if !ok || n > 65535 {
				return s.refuse("-ERR Invalid XCLIENT PORT.\r\n")
			}
			port = n
		}
	}
	s.ip, s.port = ip, port
	s.log = s.srv.log.With("client", s.ip.String(), "proxy", s.peer.String())
	s.write("+OK\r\n")
	return false
}

// sasl runs AUTH <arg>: the mechanism and an optional initial response.
// It returns the user and password, or a refusal to send the client (a
// non-empty reply), or an error when the connection is over.
func (s *session) sasl(arg string) (user, pass, reply string, err error) {
	mech, ir, hasIR := strings.Cut(arg, " ")
	user, pass, err = saslserver.Run(mech, ir, hasIR, func(challenge string) (string, error) {
		s.write("+ " + challenge + "\r\n")
		return s.readLine()
	})
	switch {
	case errors.Is(err, saslserver.ErrCancelled):
		return "", "", replyCancelled, nil
	case errors.Is(err, saslserver.ErrBadBase64):
		return "", "", replyBadBase64, nil
	case errors.Is(err, saslserver.ErrBadResponse), errors.Is(err, saslserver.ErrAuthzid):
		return "", "", replyBadSASL, nil
	case errors.Is(err, saslserver.ErrNoSuchMechanism):
		return "", "", "-ERR Unsupported authentication mechanism.\r\n", nil
	}
	return user, pass, "", err
}

// here reports whether a user's tohost lets them in on this backend: its
// host part names this backend or a peer, case aside, whatever its port;
// or it is empty and AcceptDefault is set. (The same rule as delivery's.)
func (s *Server) here(u authent.User) bool {
	return home.Rule{Name: s.name, AcceptDefault: s.cfg.AcceptDefault, Peers: s.cfg.Peers}.Here(u.Get("tohost"))
}

// login checks a password with the directory and opens the maildrop. It
// reports whether the connection is over; after a refusal the client
// may try again, up to maxLoginFailures wrong passwords.
func (s *session) login(ctx context.Context, user, pass string) bool {
	cfg := &s.srv.cfg
	u, err := cfg.Directory.Check(ctx, user, pass, s.ip.String())
	switch {
	case errors.Is(err, authent.ErrBadCredentials):
		cfg.Metrics.login(outcomeFailed)
		s.log.Info("login failed", "user", user)
		if s.failures++; s.failures >= maxLoginFailures {
			s.write(replyTooManyAuth)
			return true
		}
		s.write(replyAuthFailed)
		return false
	case err != nil:
		cfg.Metrics.login(outcomeUnavailable)
		s.log.Warn("login: directory unavailable", "user", user, "err", err)
		s.write(replyTemp)
		return false
	}
	if !s.srv.here(u) {
		cfg.Metrics.login(outcomeRefused)
		s.log.Warn("login refused: the user's mailbox is on another backend", "user", user, "tohost", u.Get("tohost"))
		s.write(replyElsewhere)
		return false
	}
	name := u.Name
	if name == "" {
		name = user
	}
	mb, err := cfg.Store.Mailbox(name)
	if err != nil {
		cfg.Metrics.login(outcomeUnavailable)
		s.log.Error("login: mailbox", "user", name, "err", err)
		s.write(replyTemp)
		return false
	}
	unlock, err := mb.LockPOP3()
	if errors.Is(err, maildir.ErrInUse) {
		cfg.Metrics.login(outcomeInUse)
		s.log.Info("login: maildrop in use", "user", name)
		s.write(replyInUse)
		return false
	}
	if err != nil {
		cfg.Metrics.login(outcomeUnavailable)
		s.log.Error("login: lock", "user", name, "err", err)
		s.write(replyTemp)
		return false
	}
	f, err := mb.Folder("INBOX")
	var list []maildir.Message
	if err == nil {
		list, err = f.Sync()
	}
	if err != nil {
		unlock()
		cfg.Metrics.login(outcomeUnavailable)
		s.log.Error("login: INBOX", "user", name, "err", err)
		s.write(replyTemp)
		return false
	}
	s.folder, s.unlock, s.user = f, unlock, name
	s.msgs = make([]*message, len(list))
	for i, m := range list {
		s.msgs[i] = &message{Message: m, size: -1}
	}
	s.log = s.log.With("user", name)
	cfg.Metrics.login(outcomeOK)
	s.log.Info("login", "messages", len(list))
	s.write(fmt.Sprintf("+OK Logged in, %d messages.\r\n", len(list)))
	return false
}

// transaction runs a command after login.
func (s *session) transaction(cmd command) bool {
	switch cmd.Name {
	case "CAPA":
		s.capa()
	case "NOOP":
		if cmd.Arg != "" {
			return s.refuse("-ERR NOOP takes no argument.\r\n")
		}
		s.write("+OK\r\n")
	case "STAT":
		if cmd.Arg != "" {
			return s.refuse("-ERR STAT takes no argument.\r\n")
		}
		n, size := s.stat()
		s.write(fmt.Sprintf("+OK %d %d\r\n", n, size))
	case "LIST", "UIDL":
		if cmd.Arg == "" {
			s.listAll(cmd.Name == "UIDL")
			return false
		}
		m, i, reply := s.message(cmd.Arg)
		if m == nil {
			return reply != "" && s.refuse(reply)
		}
		if cmd.Name == "UIDL" {
			s.write(fmt.Sprintf("+OK %d %s\r\n", i, uidl(m.Key)))
		} else {
			s.write(fmt.Sprintf("+OK %d %d\r\n", i, s.size(m)))
		}
	case "RETR":
		m, _, reply := s.message(cmd.Arg)
		if m == nil {
			return reply != "" && s.refuse(reply)
		}
		return s.send(m, -1)
	case "TOP":
		n, ok := parseNumbers(cmd.Arg, 2)
		if !ok {
			return s.refuse("-ERR Usage: TOP message lines.\r\n")
		}
		m, _, _ := s.message(strconv.Itoa(n[0]))
		if m == nil {
			return false
		}
		return s.send(m, n[1])
	case "DELE":
		m, i, reply := s.message(cmd.Arg)
		if m == nil {
			return reply != "" && s.refuse(reply)
		}
		m.deleted = true
		s.write(fmt.Sprintf("+OK Message %d deleted.\r\n", i))
	case "RSET":
		if cmd.Arg != "" {
			return s.refuse("-ERR RSET takes no argument.\r\n")
		}
		for _, m := range s.msgs {
			m.deleted = false
		}
		n, size := s.stat()
		s.write(fmt.Sprintf("+OK %d messages (%d octets).\r\n", n, size))
	case "QUIT":
		s.update()
		return true
	case "USER", "PASS", "AUTH", "STLS", "XCLIENT":
		return s.refuse("-ERR Already logged in.\r\n")
	default:
		return s.refuse("-ERR Unknown command.\r\n")
	}
	return false
}

// message finds the message an argument numbers. When there is none it
// writes why (no such message, already deleted) and returns a nil
// message; a malformed argument is returned as a reply to refuse with.
func (s *session) message(arg string) (m *message, n int, refuse string) {
	n, ok := parseNumber(arg)
	if !ok {
		return nil, 0, "-ERR Invalid message number.\r\n"
	}
	if n < 1 || n > len(s.msgs) {
		s.write(replyNoMessage)
		return nil, 0, ""
	}
	m = s.msgs[n-1]
	if m.deleted {
		s.write(fmt.Sprintf("-ERR Message %d already deleted.\r\n", n))
		return nil, 0, ""
	}
	return m, n, ""
}

// size returns a message's size as sent, computed on first use (the
// stored file may have LF line endings).
func (s *session) size(m *message) int64 {
	if m.size >= 0 {
		return m.size
	}
	m.size = m.Size
	f, err := s.folder.Open(m.UID)
	if err != nil {
		s.log.Warn("size of a message", "uid", m.UID, "err", err)
		return m.size
	}
	defer f.Close()
	if n, err := wireSize(bufio.NewReader(f)); err == nil {
		m.size = n
	} else {
		s.log.Warn("size of a message", "uid", m.UID, "err", err)
	}
	return m.size
}

// stat returns the number and total size of the messages not deleted.
func (s *session) stat() (n int, size int64) {
	for _, m := range s.msgs {
		if !m.deleted {
			n++
			size += s.size(m)
		}
	}
	return n, size
}

// listAll answers LIST or UIDL without an argument.
func (s *session) listAll(uids bool) {
	if uids {
		s.write("+OK Unique-ID listing follows.\r\n")
	} else {
		n, size := s.stat()
		s.write(fmt.Sprintf("+OK %d messages (%d octets).\r\n", n, size))
	}
	for i, m := range s.msgs {
		if m.deleted {
			continue
		}
		if uids {
			s.write(fmt.Sprintf("%d %s\r\n", i+1, uidl(m.Key)))
		} else {
			s.write(fmt.Sprintf("%d %d\r\n", i+1, s.size(m)))
		}
	}
	s.write(".\r\n")
}

// send answers RETR (lines < 0) or TOP: the message with CR LF endings,
// byte-stuffed, and the terminating dot. An error once the +OK is out
// cannot be told to the client: the connection is closed.
func (s *session) send(m *message, lines int) bool {
	f, err := s.folder.Open(m.UID)
	if errors.Is(err, maildir.ErrNoMessage) {
		s.write("-ERR Message was removed by another session.\r\n")
		return false
	}
	if err != nil {
		s.log.Error("open message", "uid", m.UID, "err", err)
		s.write(replyTemp)
		return false
	}
	defer f.Close()
	if lines < 0 {
		s.write(fmt.Sprintf("+OK %d octets.\r\n", s.size(m)))
	} else {
		s.write("+OK\r\n")
	}
	if _, err := copyMessage(s.w, f, true, lines); err != nil {
		s.log.Warn("send message", "uid", m.UID, "err", err)
		return true
	}
	s.write(".\r\n")
	if lines < 0 {
		m.retrieved = true
		s.srv.cfg.Metrics.retrievedOne()
	}
	return false
}

// update is the UPDATE state (RFC 1939 section 6): remove the messages
// marked deleted, flag the retrieved ones \Seen when configured, unlock
// the maildrop and say goodbye. The lock goes before the goodbye: a
// client that logs in again as soon as it has read it must not find its
// own session still holding the maildrop.
func (s *session) update() {
	var uids []uint32
	for _, m := range s.msgs {
		if m.deleted {
			uids = append(uids, m.UID)
		}
	}
	if s.srv.cfg.MarkSeen {
		s.markSeen()
	}
	if len(uids) > 0 {
		if err := s.folder.Expunge(uids); err != nil {
			s.log.Error("QUIT: expunge", "err", err)
			s.releaseLock()
			s.write("-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n")
			return
		}
		s.srv.cfg.Metrics.deletedN(len(uids))
	}
	s.log.Info("logout", "deleted", len(uids))
	s.releaseLock()
	s.write(fmt.Sprintf("+OK Bye, %d messages deleted.\r\n", len(uids)))
}

// releaseLock releases the maildrop lock, once.
func (s *session) releaseLock() {
	if s.unlock != nil {
		s.unlock()
		s.unlock = nil
	}
}

// markSeen adds \Seen to the flags of the messages retrieved and not
// deleted, keeping the flags they have now (an IMAP session may have
// changed them since the login).
func (s *session) markSeen() {
	want := make(map[uint32]bool)
	for _, m := range s.msgs {
		if m.retrieved && !m.deleted {
			want[m.UID] = true
		}
	}
	if len(want) == 0 {
		return
	}
	now, err := s.folder.Sync()
	if err != nil {
		s.log.Warn("QUIT: flags", "err", err)
		return
	}
	for _, m := range now {
		if !want[m.UID] {
			continue
		}
		if slices.Contains(m.Flags, `\Seen`) {
			continue
		}
		// SetFlags ignores \Recent.
		if err := s.folder.SetFlags(m.UID, append(slices.Clip(m.Flags), `\Seen`)); err != nil {
			s.log.Warn("QUIT: flags", "uid", m.UID, "err", err)
		}
	}
}

// uidl returns a message's unique-id: its Maildir key, or when that is
// not a valid one (RFC 1939: 1 to 70 characters 0x21 to 0x7E) a hash of
// it, as stable.
func uidl(key string) string {
	ok := len(key) >= 1 && len(key) <= 70
	for i := 0; ok && i < len(key); i++ {
		ok = key[i] >= 0x21 && key[i] <= 0x7e
	}
	if ok {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}
