package monitor

import (
	"context"
	"sync"

	"github.com/vigil-mesh/vigil/agent"
)

// inbox is the bounded queue of received messages waiting for the agent to take them. When full,
// the oldest message is dropped and counted; the count is handed to the next taker.
type inbox struct {
	mu      sync.Mutex
	buf     []agent.Message // ring of cap size
	head, n int
	dropped uint64
	ready   chan struct{} // closed and replaced when a message arrives
}

func newInbox(size int) *inbox {
	return &inbox{buf: make([]agent.Message, size), ready: make(chan struct{})}
}

func (q *inbox) push(m agent.Message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == len(q.buf) {
		q.buf[q.head] = agent.Message{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		q.dropped++
	}
	q.buf[(q.head+q.n)%len(q.buf)] = m
	q.n++
	close(q.ready)
	q.ready = make(chan struct{})
}

// take removes up to max messages, oldest first, and the drop count since the last take. It does
// not block.
func (q *inbox) take(max int) ([]agent.Message, uint64, <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := min(max, q.n)
	out := make([]agent.Message, k)
	for i := range k {
		out[i] = q.buf[q.head]
		q.buf[q.head] = agent.Message{}
		q.head = (q.head + 1) % len(q.buf)
	}
	q.n -= k
	d := q.dropped
	q.dropped = 0
	return out, d, q.ready
}

// wait takes up to max messages, blocking until at least one is there or ctx ends (then it
// returns what is there, possibly nothing).
func (q *inbox) wait(ctx context.Context, max int) ([]agent.Message, uint64) {
	var total uint64
	for {
		ms, d, ready := q.take(max)
		total += d
		if len(ms) > 0 {
			return ms, total
		}
		select {
		case <-ctx.Done():
			return nil, total
		case <-ready:
		}
	}
}

// status holds the latest connection state and wakes watchers on change.
type status struct {
	mu      sync.Mutex
	ev      agent.ConnEvent
	changed chan struct{}
}

func (s *status) get() (agent.ConnEvent, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ev, s.changed
}

func (s *status) set(ev agent.ConnEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ev = ev
	close(s.changed)
	s.changed = make(chan struct{})
}
