package proxy

import (
	"bufio"
	"io"
	"net"
	"time"

	"github.com/tohost/tohost/internal/listen"
)

// relay carries a logged-in session: bytes both ways between the client
// and the backend until either side closes. What the proxy already read
// past the login (the client's pipelined commands in s.r, the backend's
// next lines in br) goes first. When one side ends its stream the other
// is told by a half-close, so a final reply still gets through; when both
// directions are done, both connections are closed.
func (s *session) relay(backend net.Conn, br *bufio.Reader) {
	s.c.SetDeadline(time.Time{})
	backend.SetDeadline(time.Time{})
	in := make(chan int64, 1)
	go func() {
		n := forward(backend, s.c, s.r)
		closeWrite(backend)
		in <- n
	}()
	out := forward(s.c, backend, br)
	closeWrite(s.c)
	// The backend is done: the client's side ends too (an IMAP client
	// that is still sending gets its connection closed).
	s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n := <-in
	backend.Close()
	s.p.cfg.Metrics.relayed(s.proto, n, out)
}

// forward copies src to dst, first what buf holds of it, then straight
// from the socket (spliced in the kernel when both are plain TCP).
func forward(dst, src net.Conn, buf *bufio.Reader) int64 {
	var n int64
	if buf != nil && buf.Buffered() > 0 {
		b, _ := buf.Peek(buf.Buffered())
		k, err := dst.Write(b)
		n += int64(k)
		if err != nil {
			return n
		}
		buf.Discard(k)
	}
	k, _ := io.Copy(listen.Raw(dst), listen.Raw(src))
	return n + k
}

// closeWrite half-closes c where it can, so the peer reads an end of
// stream after the last bytes.
func closeWrite(c net.Conn) {
	if cw, ok := listen.Raw(c).(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
