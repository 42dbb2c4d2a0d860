package gossip

import (
	"container/heap"
	"time"
)

// replayCache remembers payload keys until their expiry. It is pure (the caller passes now) and
// bounded: at most cap entries; when full, the entry expiring first is dropped. Not safe for
// concurrent use.
type replayCache struct {
	cap int
	m   map[dedupeKey]int64
	h   expiryHeap
}

type expiryItem struct {
	key dedupeKey
	exp int64
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func newReplayCache(capacity int) *replayCache {
	return &replayCache{cap: capacity, m: make(map[dedupeKey]int64)}
}

// seen reports whether k is remembered and not yet expired at now.
func (c *replayCache) seen(k dedupeKey, now time.Time) bool {
	exp, ok := c.m[k]
	return ok && exp >= now.UnixNano()
}

// add remembers k until exp, first dropping expired entries and, if still full, the one that
// expires first.
func (c *replayCache) add(k dedupeKey, exp, now time.Time) {
	n := now.UnixNano()
	for len(c.h) > 0 && c.h[0].exp < n {
		it := heap.Pop(&c.h).(expiryItem)
		if c.m[it.key] == it.exp {
			delete(c.m, it.key)
		}
	}
	for len(c.m) >= c.cap && len(c.h) > 0 {
		it := heap.Pop(&c.h).(expiryItem)
		if c.m[it.key] == it.exp {
			delete(c.m, it.key)
		}
	}
	c.m[k] = exp.UnixNano()
	heap.Push(&c.h, expiryItem{k, exp.UnixNano()})
}

func (c *replayCache) len() int { return len(c.m) }

// bucket is a token bucket: rate tokens per second up to burst. Pure: the caller passes now.
type bucket struct {
	tokens float64
	last   time.Time
}

// allow takes one token if there is one.
func (b *bucket) allow(now time.Time, rate float64, burst int) bool {
	if b.last.IsZero() {
		b.tokens = float64(burst)
	} else if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(float64(burst), b.tokens+dt*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
