package listen

import (
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/pires/go-proxyproto"
)

// drainLimit bounds what CloseGracefully reads and throws away: enough
// for the rest of an over-long line or two.
const drainLimit = 256 << 10

// CloseGracefully closes nc so that the replies written to it reach the
// client. Closing a socket with unread input makes the kernel answer with
// a reset, and a client then usually loses the last reply (the -ERR that
// says why it is being disconnected). So: shut the write side, which sends
// the client an end of stream after the replies, read and discard what the
// client still sends for at most wait (and at most 256 KiB), then close.
func CloseGracefully(nc net.Conn, wait time.Duration) error {
	raw := shutWrite(nc)
	raw.SetReadDeadline(time.Now().Add(wait))
	io.CopyN(io.Discard, raw, drainLimit)
	return nc.Close()
}

// shutWrite half-closes the connection under every wrapper it knows and
// returns the innermost connection, from which the rest of the input is
// drained as raw bytes.
func shutWrite(c net.Conn) net.Conn {
	for {
		switch t := c.(type) {
		case *tls.Conn:
			t.CloseWrite() // close_notify, when the handshake is done
			c = t.NetConn()
		case *proxyproto.Conn:
			c = t.Raw()
		case interface{ CloseWrite() error }:
			t.CloseWrite()
			return c
		default:
			return c
		}
	}
}
