package telemetry

import (
	"sync"
	"time"
)

// DefaultSize is the default number of records a node keeps.
const DefaultSize = 100_000

// Record kinds.
const (
	KindSend    = "send"    // a message an agent of this node sent (recorded at the sender's node)
	KindReceive = "receive" // a message delivered to an agent of this node
	KindEvent   = "event"   // an event the agent reported (Action is "<event kind>:<name>")
)

// Outcome of a successful operation; refusals carry their refusal code instead.
const OutcomeOK = "ok"

// Record is one thing an agent did, as its node saw it.
type Record struct {
	Time    time.Time     // when the node recorded it: the end of the operation
	Agent   string        // the agent's name
	AgentID string        // the agent's peer ID
	Kind    string        // KindSend, KindReceive, KindEvent
	Action  string        // the capability named, or "<event kind>:<event name>"
	Peer    string        // the other agent (name), if any
	Bytes   int           // message body bytes
	Latency time.Duration // send: until the receipt; receive: the handler's ack; events: 0
	Outcome string        // OutcomeOK or a refusal code (no_capability, …)
	Hop     string        // where a refusal happened (sender-node, receiver-node, receiver)
	Value   float64       // an event's value
}

// Query selects records: Agent matches the name or the peer ID ("" = every agent); records at
// or after Since; at most Limit (the newest), oldest first.
type Query struct {
	Agent string
	Since time.Time
	Limit int
}

// Buffer is a bounded ring of Records with subscribers. Safe for concurrent use.
type Buffer struct {
	mu      sync.Mutex
	recs    []Record
	next    int // index of the slot the next Add writes
	n       int // records held
	dropped uint64
	total   uint64

	smu    sync.RWMutex
	subs   map[uint64]func(Record)
	order  []uint64
	nextID uint64
}

// New returns a buffer holding at most size records (size < 1 means 1).
func New(size int) *Buffer {
	size = max(size, 1)
	return &Buffer{recs: make([]Record, size), subs: map[uint64]func(Record){}}
}

// Add records r and hands it to every subscriber.
func (b *Buffer) Add(r Record) {
	b.mu.Lock()
	if b.n == len(b.recs) {
		b.dropped++
	} else {
		b.n++
	}
	b.recs[b.next] = r
	b.next = (b.next + 1) % len(b.recs)
	b.total++
	b.mu.Unlock()

	b.smu.RLock()
	defer b.smu.RUnlock()
	for _, id := range b.order {
		b.subs[id](r)
	}
}

// Subscribe calls fn with every Record added from now on, synchronously in Add: fn must not
// block. The returned function cancels the subscription.
func (b *Buffer) Subscribe(fn func(Record)) (cancel func()) {
	b.smu.Lock()
	id := b.nextID
	b.nextID++
	b.subs[id] = fn
	b.order = append(b.order, id)
	b.smu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.smu.Lock()
			delete(b.subs, id)
			for i, x := range b.order {
				if x == id {
					b.order = append(b.order[:i:i], b.order[i+1:]...)
					break
				}
			}
			b.smu.Unlock()
		})
	}
}

// Query returns the newest records matching q, oldest first.
func (b *Buffer) Query(q Query) []Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := q.Limit
	if limit <= 0 || limit > b.n {
		limit = b.n
	}
	var out []Record
	// Walk from the newest back, then reverse.
	for i := 0; i < b.n && len(out) < limit; i++ {
		r := b.recs[(b.next-1-i+2*len(b.recs))%len(b.recs)]
		if !q.Since.IsZero() && r.Time.Before(q.Since) {
			continue // concurrent writers may add records slightly out of time order
		}
		if q.Agent != "" && r.Agent != q.Agent && r.AgentID != q.Agent {
			continue
		}
		out = append(out, r)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Stats: records held, capacity, records overwritten, records ever added.
func (b *Buffer) Stats() (held, size int, dropped, total uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n, len(b.recs), b.dropped, b.total
}
