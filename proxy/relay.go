package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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

// forward copies src to dst, first what buf holds of it, then from the
// socket, until src ends.
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
	rawDst, rawSrc := listen.Raw(dst), listen.Raw(src)
	sc, ok := rawSrc.(syscall.Conn)
	_, dstTCP := rawDst.(*net.TCPConn)
	if !ok || !dstTCP {
		k, _ := io.Copy(rawDst, rawSrc) // TLS or PROXY-wrapped: Go's own copy
		return n + k
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		k, _ := io.Copy(rawDst, rawSrc)
		return n + k
	}
	return n + spliceWhenReady(rawDst, rawSrc, rc)
}

// spliceWhenReady copies src to dst in the kernel (splice) a burst at a
// time: it waits, holding nothing, until src has data, then splices
// exactly what is queued. A plain io.Copy between sockets would splice
// too, but holds a pipe pair (two descriptors) for as long as it waits, so
// every idle session would cost four extra descriptors.
func spliceWhenReady(dst, src net.Conn, rc syscall.RawConn) int64 {
	var n int64
	peek := make([]byte, 1) // one per direction, not one per burst
	for {
		queued, err := waitQueued(rc, peek)
		if err != nil || queued == 0 { // error, or the end of the stream
			return n
		}
		k, err := io.Copy(dst, io.LimitReader(src, int64(queued)))
		n += k
		if err != nil || k == 0 {
			return n
		}
	}
}

// waitQueued blocks until the socket has input (or its end, or an error)
// and returns how many bytes are queued: 0 at the end of the stream.
func waitQueued(rc syscall.RawConn, peek []byte) (int, error) {
	var queued int
	var serr error
	err := rc.Read(func(fd uintptr) bool {
		k, _, err := unix.Recvfrom(int(fd), peek, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return false // nothing yet: the poller waits for the socket
		}
		if err != nil {
			serr = err
			return true
		}
		if k == 0 {
			return true // end of stream
		}
		queued, serr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) // FIONREAD
		return true
	})
	if err != nil {
		return 0, err
	}
	return queued, serr
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
