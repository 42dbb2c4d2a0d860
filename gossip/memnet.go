package gossip

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemNetwork is an in-memory network for memberlist with packet loss, partitions and paused
// nodes, for tests and sim/. Unlike memberlist's MockNetwork it never blocks a sender: a packet
// to a full, paused, partitioned or shut-down node is dropped, as UDP would drop it, and a
// stream to one fails at once, so failure detection works on it. Streams are net.Pipe pairs
// that fail on the next write once their endpoints are cut apart.
//
// Loss is drawn from one seeded generator, so a run is repeatable up to goroutine scheduling.
type MemNetwork struct {
	mu      sync.Mutex
	rng     *rand.Rand
	loss    float64
	byAddr  map[string]*MemTransport
	byName  map[string]*MemTransport
	blocked map[[2]*MemTransport]bool
	next    int
}

// NewMemNetwork returns an empty network whose loss draws come from seed.
func NewMemNetwork(seed uint64) *MemNetwork {
	return &MemNetwork{
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		byAddr:  map[string]*MemTransport{},
		byName:  map[string]*MemTransport{},
		blocked: map[[2]*MemTransport]bool{},
	}
}

// packetQueue is how many packets a transport buffers before dropping.
const packetQueue = 4096

// NewTransport adds a node called name (its memberlist name) at a fresh address 10.x.y.z:7946.
func (n *MemNetwork) NewTransport(name string) *MemTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	ip := net.IPv4(10, byte(n.next>>16), byte(n.next>>8), byte(n.next))
	t := &MemTransport{
		net:      n,
		name:     name,
		addr:     &net.UDPAddr{IP: ip, Port: 7946},
		packetCh: make(chan *memberlist.Packet, packetQueue),
		streamCh: make(chan net.Conn, 64),
	}
	n.byAddr[t.addr.String()] = t
	n.byName[name] = t
	return t
}

// SetLoss sets the probability in [0, 1] that any packet is dropped.
func (n *MemNetwork) SetLoss(p float64) {
	n.mu.Lock()
	n.loss = p
	n.mu.Unlock()
}

// Partition cuts every link between a node of a and a node of b, both ways.
func (n *MemNetwork) Partition(a, b []*MemTransport) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			n.blocked[[2]*MemTransport{x, y}] = true
			n.blocked[[2]*MemTransport{y, x}] = true
		}
	}
}

// Heal removes every partition.
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	clear(n.blocked)
	n.mu.Unlock()
}

// Pause makes t unreachable and silent (like a stopped process or a pulled cable) until
// Resume: every packet to or from it is dropped and every stream fails.
func (n *MemNetwork) Pause(t *MemTransport)  { t.paused.Store(true) }
func (n *MemNetwork) Resume(t *MemTransport) { t.paused.Store(false) }

// Transport returns the transport called name, or nil.
func (n *MemNetwork) Transport(name string) *MemTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byName[name]
}

// reachable reports whether a packet from src reaches dst, drawing loss when lossy.
func (n *MemNetwork) reachable(src, dst *MemTransport, lossy bool) bool {
	if src.paused.Load() || dst.paused.Load() || src.shut.Load() || dst.shut.Load() {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.blocked[[2]*MemTransport{src, dst}] {
		return false
	}
	return !lossy || n.loss == 0 || n.rng.Float64() >= n.loss
}

func (n *MemNetwork) lookup(a memberlist.Address) (*MemTransport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if a.Name != "" {
		if t, ok := n.byName[a.Name]; ok {
			return t, nil
		}
	}
	if t, ok := n.byAddr[a.Addr]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("memnet: no route to %s", a.String())
}

// MemTransport is one node's memberlist.NodeAwareTransport on a MemNetwork.
type MemTransport struct {
	net      *MemNetwork
	name     string
	addr     *net.UDPAddr
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	paused   atomic.Bool
	shut     atomic.Bool

	sentPackets, sentBytes atomic.Uint64 // what this node wrote (packets and stream bytes)
	dropped                atomic.Uint64 // packets it sent that were lost
}

var _ memberlist.NodeAwareTransport = (*MemTransport)(nil)

// Addr returns host:port, what other nodes Join.
func (t *MemTransport) Addr() string { return t.addr.String() }

// SentBytes returns how many bytes this node has written (packets and streams).
func (t *MemTransport) SentBytes() uint64 { return t.sentBytes.Load() }

// SentPackets returns how many packets this node has sent.
func (t *MemTransport) SentPackets() uint64 { return t.sentPackets.Load() }

// FinalAdvertiseAddr returns the transport's own address.
func (t *MemTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.addr.IP, t.addr.Port, nil
}

// WriteTo sends a packet to addr ("host:port").
func (t *MemTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet; it never blocks, and a packet that cannot be delivered is
// dropped without error, as with UDP.
func (t *MemTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	dst, err := t.net.lookup(a)
	if err != nil {
		return now, err
	}
	t.sentPackets.Add(1)
	t.sentBytes.Add(uint64(len(b)))
	if !t.net.reachable(t, dst, true) {
		t.dropped.Add(1)
		return now, nil
	}
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: t.addr, Timestamp: now}
	select {
	case dst.packetCh <- p:
	default:
		t.dropped.Add(1)
	}
	return now, nil
}

// PacketCh returns incoming packets.
func (t *MemTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream to addr.
func (t *MemTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// errUnreachable is what a stream to a paused, partitioned or shut-down node gets.
var errUnreachable = &net.OpError{Op: "dial", Net: "mem", Err: os.ErrDeadlineExceeded}

// DialAddressTimeout opens a net.Pipe stream to a; it fails at once when a is unreachable.
func (t *MemTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dst, err := t.net.lookup(a)
	if err != nil {
		return nil, err
	}
	if !t.net.reachable(t, dst, false) {
		return nil, errUnreachable
	}
	p1, p2 := net.Pipe()
	remote := &memConn{Conn: p1, from: dst, to: t, local: dst.addr, remote: t.addr}
	select {
	case dst.streamCh <- remote:
	default:
		p1.Close()
		p2.Close()
		return nil, errors.New("memnet: stream backlog full")
	}
	return &memConn{Conn: p2, from: t, to: dst, local: t.addr, remote: dst.addr}, nil
}

// StreamCh returns incoming streams.
func (t *MemTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown marks the node gone: everything sent to it from now on is dropped, and the
// streams queued for it and never accepted are closed, as a closed listener resets them.
func (t *MemTransport) Shutdown() error {
	t.shut.Store(true)
	for {
		select {
		case c := <-t.streamCh:
			c.Close()
		default:
			return nil
		}
	}
}

// streamWriteTimeout bounds a write on a stream whose owner set no deadline. A net.Pipe write
// waits for the reader, unlike a TCP write that the kernel buffers; memberlist's SendReliable
// writes without a deadline, so without this bound a write to a node that shut down after the
// dial (its end never accepted) would block forever.
const streamWriteTimeout = 10 * time.Second

// memConn is one end of a stream; a write fails once the two ends are cut apart.
type memConn struct {
	net.Conn
	from, to      *MemTransport
	local, remote net.Addr
	deadline      atomic.Bool // the owner set a write deadline itself
}

func (c *memConn) Write(b []byte) (int, error) {
	if !c.from.net.reachable(c.from, c.to, false) {
		c.Conn.Close()
		return 0, errUnreachable
	}
	if !c.deadline.Load() {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	}
	c.from.sentBytes.Add(uint64(len(b)))
	return c.Conn.Write(b)
}

func (c *memConn) SetDeadline(t time.Time) error {
	c.deadline.Store(!t.IsZero())
	return c.Conn.SetDeadline(t)
}

func (c *memConn) SetWriteDeadline(t time.Time) error {
	c.deadline.Store(!t.IsZero())
	return c.Conn.SetWriteDeadline(t)
}

func (c *memConn) LocalAddr() net.Addr  { return c.local }
func (c *memConn) RemoteAddr() net.Addr { return c.remote }
