package agentproto

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// maxIdleStreams bounds the idle streams a Pool keeps per peer; maxIdleAge drops a pooled stream
// long before the other side's idle timeout (RouterConfig.IdleTimeout, 5 min) could reset it.
const (
	maxIdleStreams = 8
	maxIdleAge     = time.Minute
)

type idleStream struct {
	s     network.Stream
	since time.Time
}

// Pool makes request/answer calls over reusable streams of one protocol: a stream carries one
// exchange at a time and goes back to the pool after a complete answer, so a steady flow of
// messages costs no stream negotiation. Safe for concurrent use.
type Pool struct {
	h      host.Host
	proto  protocol.ID
	noDial bool

	mu   sync.Mutex
	idle map[peer.ID][]idleStream
}

// NewPool returns a pool for proto on h. With noDial, a call never dials: it uses an existing
// connection only (nodes reach attached agents this way).
func NewPool(h host.Host, proto protocol.ID, noDial bool) *Pool {
	return &Pool{h: h, proto: proto, noDial: noDial, idle: map[peer.ID][]idleStream{}}
}

// Call sends req to p and returns the answer. It never sends a request twice: a failure after
// the request was written (the other side may have handled it) is returned as is; a failure to
// open a stream wraps ErrUnreachable (nothing was sent). A failed stream is reset, not pooled.
func (pl *Pool) Call(ctx context.Context, p peer.ID, req Message) (Message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultIOTimeout)
		defer cancel()
	}
	s, err := pl.get(ctx, p)
	if err != nil {
		return nil, err
	}
	resp, err := exchange(ctx, s, req)
	if err != nil {
		_ = s.Reset()
		return nil, err
	}
	pl.put(p, s)
	return resp, nil
}

func exchange(ctx context.Context, s network.Stream, req Message) (Message, error) {
	d, _ := ctx.Deadline()
	_ = s.SetDeadline(d)
	if err := WriteEnvelope(s, req); err != nil {
		return nil, err
	}
	resp, err := ReadEnvelope(s)
	if err != nil {
		return nil, err
	}
	_ = s.SetDeadline(time.Time{})
	return resp, nil
}

func (pl *Pool) get(ctx context.Context, p peer.ID) (network.Stream, error) {
	now := time.Now()
	pl.mu.Lock()
	for ss := pl.idle[p]; len(ss) > 0; ss = pl.idle[p] {
		is := ss[len(ss)-1]
		pl.idle[p] = ss[:len(ss)-1]
		if now.Sub(is.since) > maxIdleAge || is.s.Conn().IsClosed() {
			_ = is.s.Reset()
			continue
		}
		pl.mu.Unlock()
		return is.s, nil
	}
	delete(pl.idle, p)
	pl.mu.Unlock()
	if pl.noDial {
		ctx = network.WithNoDial(ctx, "pool")
	}
	s, err := pl.h.NewStream(ctx, p, pl.proto)
	if err != nil {
		return nil, fmt.Errorf("agentproto: open %s to %s: %w: %v", pl.proto, p, ErrUnreachable, err)
	}
	return s, nil
}

func (pl *Pool) put(p peer.ID, s network.Stream) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if len(pl.idle[p]) >= maxIdleStreams {
		_ = s.Close()
		return
	}
	pl.idle[p] = append(pl.idle[p], idleStream{s: s, since: time.Now()})
}

// Forget drops (resets) every idle stream to p, e.g. when p disconnects.
func (pl *Pool) Forget(p peer.ID) {
	pl.mu.Lock()
	ss := pl.idle[p]
	delete(pl.idle, p)
	pl.mu.Unlock()
	for _, is := range ss {
		_ = is.s.Reset()
	}
}

// Close resets every idle stream.
func (pl *Pool) Close() {
	pl.mu.Lock()
	all := pl.idle
	pl.idle = map[peer.ID][]idleStream{}
	pl.mu.Unlock()
	for _, ss := range all {
		for _, is := range ss {
			_ = is.s.Reset()
		}
	}
}

// ServeLoop answers requests on s one after another with handle until the stream ends or an
// answer cannot be written. A malformed request ends the stream (it is reset). idle bounds the
// wait for each next request.
func ServeLoop(s network.Stream, idle time.Duration, handle func(Message) Message) {
	defer s.Reset() // no-op after Close
	for {
		_ = s.SetReadDeadline(time.Now().Add(idle))
		req, err := ReadEnvelope(s)
		if err != nil {
			return
		}
		_ = s.SetReadDeadline(time.Time{})
		resp := handle(req)
		_ = s.SetWriteDeadline(time.Now().Add(defaultIOTimeout))
		if err := WriteEnvelope(s, resp); err != nil {
			return
		}
	}
}
