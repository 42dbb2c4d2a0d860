package transport

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// RaftProtocol is the libp2p protocol ID of raft traffic between Vigil nodes.
const RaftProtocol protocol.ID = "/vigil/raft/1"

// addrTTL is how long addresses learnt from a ServerAddress stay in the peerstore. Every Dial
// re-adds them, so a live peer never expires.
const addrTTL = 10 * time.Minute

// Authorizer decides whether a peer may speak on the stream layer; nil error = allowed. It is
// called on every Dial (before a stream is opened) and on every inbound stream (before Accept
// returns it), so it must be fast and safe for concurrent use. A nil Authorizer refuses everyone.
type Authorizer func(peer.ID) error

// Stats are the stream layer's counters.
type Stats struct {
	DialRefused   uint64 // Dials refused by the Authorizer (no stream opened)
	AcceptRefused uint64 // inbound streams refused by the Authorizer (reset)
	Dropped       uint64 // streams reset by DropPeer
	Open          int    // streams currently open (inbound and outbound)
}

// StreamLayer is a raft.StreamLayer over libp2p streams of one protocol, with authorisation at the
// transport. It is safe for concurrent use.
type StreamLayer struct {
	host  host.Host
	proto protocol.ID
	auth  Authorizer
	log   *slog.Logger

	acceptCh  chan *conn
	closeCh   chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	closed bool
	conns  map[peer.ID]map[*conn]struct{}
	// drops counts DropPeer calls per peer. A stream being set up records the count before asking
	// the Authorizer and is tracked only if the count is unchanged, so a DropPeer that races with
	// the setup can never miss it. One entry per peer ever dropped.
	drops map[peer.ID]uint64
	// heard is, per peer, the UnixNano time of the last bytes read from any of its streams. One
	// entry per authorised peer ever tracked; conns hold their peer's entry and store to it.
	heard map[peer.ID]*atomic.Int64

	dialRefused, acceptRefused, dropped atomic.Uint64
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// NewStreamLayer registers a stream handler for proto on h and returns the layer. Close removes it.
// log may be nil.
func NewStreamLayer(h host.Host, proto protocol.ID, auth Authorizer, log *slog.Logger) *StreamLayer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &StreamLayer{
		host:     h,
		proto:    proto,
		auth:     auth,
		log:      log.With("component", "raft-transport", "protocol", string(proto)),
		acceptCh: make(chan *conn),
		closeCh:  make(chan struct{}),
		conns:    make(map[peer.ID]map[*conn]struct{}),
		drops:    make(map[peer.ID]uint64),
		heard:    make(map[peer.ID]*atomic.Int64),
	}
	h.SetStreamHandler(proto, s.handle)
	return s
}

func (s *StreamLayer) authorize(p peer.ID) error {
	if s.auth == nil {
		return fmt.Errorf("%w: %s: no authorizer (deny by default)", ErrUnauthorized, p)
	}
	if err := s.auth(p); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnauthorized, p, err)
	}
	return nil
}

// generation returns the DropPeer count of p, or an error once the layer is closed.
func (s *StreamLayer) generation(p peer.ID) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.drops[p], nil
}

// track registers c unless the layer closed or c's peer was dropped since gen was read.
func (s *StreamLayer) track(c *conn, gen uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.drops[c.peer] != gen {
		return fmt.Errorf("transport: peer %s: %w", c.peer, ErrDropped)
	}
	m := s.conns[c.peer]
	if m == nil {
		m = make(map[*conn]struct{})
		s.conns[c.peer] = m
	}
	m[c] = struct{}{}
	h := s.heard[c.peer]
	if h == nil {
		h = new(atomic.Int64)
		s.heard[c.peer] = h
	}
	c.heard = h
	return nil
}

// LastHeard returns when bytes last arrived from p on any raft stream, in either direction (a
// request p sent, or p's response to ours), or the zero time if never since the layer started.
// On a leader every follower answers each heartbeat; a follower hears at least the leader.
func (s *StreamLayer) LastHeard(p peer.ID) time.Time {
	s.mu.Lock()
	h := s.heard[p]
	s.mu.Unlock()
	if h == nil || h.Load() == 0 {
		return time.Time{}
	}
	return time.Unix(0, h.Load())
}

func (s *StreamLayer) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.conns[c.peer]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(s.conns, c.peer)
		}
	}
}

// handle runs on libp2p's goroutine for each inbound stream: authorise, track, hand to Accept.
func (s *StreamLayer) handle(st network.Stream) {
	remote := st.Conn().RemotePeer()
	gen, err := s.generation(remote)
	if err != nil {
		_ = st.Reset()
		return
	}
	if err := s.authorize(remote); err != nil {
		s.acceptRefused.Add(1)
		s.log.Debug("inbound stream refused", "peer", remote.String(), "err", err)
		_ = st.Reset()
		return
	}
	c := &conn{st: st, layer: s, peer: remote}
	if err := s.track(c, gen); err != nil {
		_ = st.Reset()
		return
	}
	select {
	case s.acceptCh <- c:
	case <-s.closeCh:
		c.reset()
	}
}

// Accept returns the next authorised inbound stream as a net.Conn. After Close it returns an
// error wrapping ErrClosed (net.ErrClosed).
func (s *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.acceptCh:
		return c, nil
	case <-s.closeCh:
		return nil, fmt.Errorf("transport: accept: %w", ErrClosed)
	}
}

// Dial authorises the peer named by address, then connects (within timeout) and opens a stream.
// A refused peer gets an error wrapping ErrUnauthorized and no connection or stream is attempted.
// timeout <= 0 means no limit.
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	info, err := ParseServerAddress(address)
	if err != nil {
		return nil, err
	}
	gen, err := s.generation(info.ID)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", info.ID, err)
	}
	if err := s.authorize(info.ID); err != nil {
		s.dialRefused.Add(1)
		s.log.Debug("dial refused", "peer", info.ID.String(), "err", err)
		return nil, err
	}
	if len(info.Addrs) > 0 {
		s.host.Peerstore().AddAddrs(info.ID, info.Addrs, addrTTL)
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	if err := s.host.Connect(ctx, peer.AddrInfo{ID: info.ID}); err != nil {
		return nil, fmt.Errorf("transport: dial %s: connect: %w", info.ID, err)
	}
	st, err := s.host.NewStream(ctx, info.ID, s.proto)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: open stream: %w", info.ID, err)
	}
	c := &conn{st: st, layer: s, peer: info.ID}
	if err := s.track(c, gen); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("transport: dial %s: %w", info.ID, err)
	}
	return c, nil
}

// DropPeer resets every open stream to and from p, in both directions, and makes any stream to or
// from p that is being set up concurrently fail. It does not consult or change the Authorizer: to
// cut a peer off, make the Authorizer refuse it first, then call DropPeer. It returns the number of
// streams reset.
func (s *StreamLayer) DropPeer(p peer.ID) int {
	s.mu.Lock()
	s.drops[p]++
	victims := make([]*conn, 0, len(s.conns[p]))
	for c := range s.conns[p] {
		victims = append(victims, c)
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.reset()
	}
	s.dropped.Add(uint64(len(victims)))
	if len(victims) > 0 {
		s.log.Debug("peer dropped", "peer", p.String(), "streams", len(victims))
	}
	return len(victims)
}

// Stats returns the current counters.
func (s *StreamLayer) Stats() Stats {
	s.mu.Lock()
	open := 0
	for _, m := range s.conns {
		open += len(m)
	}
	s.mu.Unlock()
	return Stats{
		DialRefused:   s.dialRefused.Load(),
		AcceptRefused: s.acceptRefused.Load(),
		Dropped:       s.dropped.Load(),
		Open:          open,
	}
}

// Addr returns an Addr whose String() is ServerAddress(h.ID(), h.Addrs()), with the host's
// addresses ordered so the result is stable and a non-loopback address is preferred (a peer on
// another machine that dials 127.0.0.1 reaches itself).
func (s *StreamLayer) Addr() net.Addr {
	return Addr{ServerAddress(s.host.ID(), preferredOrder(s.host.Addrs()))}
}

// preferredOrder returns a sorted copy of addrs: non-loopback first, then by binary encoding.
func preferredOrder(addrs []multiaddr.Multiaddr) []multiaddr.Multiaddr {
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, func(a, b multiaddr.Multiaddr) int {
		if la, lb := manet.IsIPLoopback(a), manet.IsIPLoopback(b); la != lb {
			if la {
				return 1
			}
			return -1
		}
		return a.Compare(b)
	})
	return addrs
}

// Close removes the stream handler, unblocks Accept with ErrClosed, and resets every open stream.
// Idempotent; it does not close the host.
func (s *StreamLayer) Close() error {
	s.closeOnce.Do(func() {
		s.host.RemoveStreamHandler(s.proto)
		s.mu.Lock()
		s.closed = true
		var all []*conn
		for _, m := range s.conns {
			for c := range m {
				all = append(all, c)
			}
		}
		s.mu.Unlock()
		close(s.closeCh)
		for _, c := range all {
			c.reset()
		}
	})
	return nil
}
