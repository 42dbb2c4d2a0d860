package gossip

import (
	"errors"
	"fmt"
	"log"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vigil-mesh/vigil/identity"
)

// Eviction. memberlist has no way to expel a member, and a removed node that keeps answering
// probes would stay "alive" forever. So every mesh wraps its transport in evictTransport and,
// every probe interval, denies the addresses of members the registry no longer admits: nothing
// is sent to them and their packets are dropped, so they are suspected, their refutations are
// refused by the alive delegate, and they are declared dead within the suspicion timeout. Their
// payloads were already dropped at the first step (not admitted).

// maxDenied bounds the denied addresses. An entry is lifted when its node is admitted again: a
// removed node's key is retired forever, so that only happens when this node's replica was
// lagging (it had not applied the admission yet) when it evicted a new node.
const maxDenied = 4096

var errDenied = errors.New("gossip: peer evicted")

type evictTransport struct {
	memberlist.NodeAwareTransport
	mu       sync.RWMutex
	denied   map[string]identity.ID // address → the member that was there
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	once     sync.Once
}

func newEvictTransport(inner memberlist.NodeAwareTransport) *evictTransport {
	t := &evictTransport{NodeAwareTransport: inner, denied: map[string]identity.ID{},
		packetCh: make(chan *memberlist.Packet), streamCh: make(chan net.Conn), done: make(chan struct{})}
	go t.pumpPackets()
	go t.pumpStreams()
	return t
}

func (t *evictTransport) deny(addr string, id identity.ID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.denied[addr]; ok || len(t.denied) >= maxDenied {
		return false
	}
	t.denied[addr] = id
	return true
}

// lift removes the entries whose member admitted(id) now accepts, and returns how many.
func (t *evictTransport) lift(admitted func(identity.ID) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for addr, id := range t.denied {
		if !id.IsZero() && admitted(id) {
			delete(t.denied, addr)
			n++
		}
	}
	return n
}

func (t *evictTransport) isDenied(addr string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.denied[addr]
	return ok
}

func (t *evictTransport) pumpPackets() {
	in := t.NodeAwareTransport.PacketCh()
	for {
		select {
		case <-t.done:
			return
		case p := <-in:
			if p.From != nil && t.isDenied(p.From.String()) {
				continue
			}
			select {
			case t.packetCh <- p:
			case <-t.done:
				return
			}
		}
	}
}

// pumpStreams drops streams whose remote address is denied. Over real TCP the remote port is
// ephemeral, so this only catches what the in-memory transport names exactly; over the network
// an evicted node's push/pull is refused by the merge delegate instead.
func (t *evictTransport) pumpStreams() {
	in := t.NodeAwareTransport.StreamCh()
	for {
		select {
		case <-t.done:
			return
		case c := <-in:
			if c.RemoteAddr() != nil && t.isDenied(c.RemoteAddr().String()) {
				c.Close()
				continue
			}
			select {
			case t.streamCh <- c:
			case <-t.done:
				c.Close()
				return
			}
		}
	}
}

func (t *evictTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }
func (t *evictTransport) StreamCh() <-chan net.Conn           { return t.streamCh }

func (t *evictTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *evictTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.isDenied(a.Addr) {
		return time.Now(), nil // dropped, as a lost datagram
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *evictTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *evictTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.isDenied(a.Addr) {
		return nil, errDenied
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

func (t *evictTransport) Shutdown() error {
	t.once.Do(func() { close(t.done) })
	return t.NodeAwareTransport.Shutdown()
}

// netTransport builds memberlist's UDP/TCP transport (retrying a dynamic port like memberlist
// does) and returns it with the port it bound.
func netTransport(bindAddr string, port int, logger *log.Logger) (*memberlist.NetTransport, int, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{bindAddr}, BindPort: port, Logger: logger}
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(nc); err == nil {
			if port == 0 {
				port = nt.GetAutoBindPort()
			}
			return nt, port, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, 0, fmt.Errorf("gossip: listen on %s:%d: %w", bindAddr, port, err)
}

// evictLoop denies the members the registry no longer admits, every probe interval.
func (m *Mesh) evictLoop(every time.Duration) {
	defer m.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
			m.evictUnadmitted()
		}
	}
}

func (m *Mesh) evictUnadmitted() {
	if n := m.evict.lift(m.cfg.Admission.Admitted); n > 0 {
		m.cfg.Logger.Info("gossip: lifted evictions of members admitted since", "count", n)
	}
	self := m.self.String()
	for _, n := range m.states.liveNodes() {
		if n.Name == self {
			continue
		}
		id, err := identity.ParseID(n.Name)
		if err == nil && m.cfg.Admission.Admitted(id) {
			continue
		}
		if m.evict.deny(n.FullAddress().Addr, id) {
			m.counts[CountEvicted].Add(1)
			m.cfg.Logger.Info("gossip: evicted a member the registry no longer admits", "member", truncate(n.Name), "addr", n.FullAddress().Addr)
		}
	}
}
