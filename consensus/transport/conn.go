package transport

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// Addr is a net.Addr whose String() is a raft ServerAddress.
type Addr struct{ addr raft.ServerAddress }

var _ net.Addr = Addr{}

// Network returns "libp2p".
func (a Addr) Network() string { return "libp2p" }

// String returns the ServerAddress.
func (a Addr) String() string { return string(a.addr) }

func connAddr(id peer.ID, ma multiaddr.Multiaddr) Addr {
	if ma == nil {
		return Addr{ServerAddress(id, nil)}
	}
	return Addr{ServerAddress(id, []multiaddr.Multiaddr{ma})}
}

// conn is a net.Conn over one libp2p stream. Reads and writes go straight to the stream (raft
// buffers on top); deadlines are the stream's deadlines. Close closes the stream (both halves) and
// reset aborts it; either one removes the conn from its layer exactly once.
type conn struct {
	st    network.Stream
	layer *StreamLayer
	peer  peer.ID
	once  sync.Once
	heard *atomic.Int64 // the layer's last-heard time of peer; set by track before any Read
}

var _ net.Conn = (*conn)(nil)

func (c *conn) LocalAddr() net.Addr {
	sc := c.st.Conn()
	return connAddr(sc.LocalPeer(), sc.LocalMultiaddr())
}

func (c *conn) RemoteAddr() net.Addr {
	sc := c.st.Conn()
	return connAddr(sc.RemotePeer(), sc.RemoteMultiaddr())
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.st.Read(p)
	if n > 0 && c.heard != nil {
		c.heard.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error)        { return c.st.Write(p) }
func (c *conn) SetDeadline(t time.Time) error      { return c.st.SetDeadline(t) }
func (c *conn) SetReadDeadline(t time.Time) error  { return c.st.SetReadDeadline(t) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.st.SetWriteDeadline(t) }

// Close closes the stream gracefully; later calls return nil.
func (c *conn) Close() error {
	err := error(nil)
	c.once.Do(func() {
		c.layer.untrack(c)
		err = c.st.Close()
	})
	return err
}

// reset aborts the stream (the remote sees an error, not EOF).
func (c *conn) reset() {
	c.once.Do(func() {
		c.layer.untrack(c)
		_ = c.st.Reset()
	})
}
