package agentproto

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// DefaultMaxThrottled bounds the agents a Router throttles at once (RouterConfig.MaxThrottled).
const DefaultMaxThrottled = 1 << 16

// Bounds of a throttle, as the policy's response section has them.
const (
	MinThrottleRate  = 1.0 / 3600
	MaxThrottleRate  = 10000
	MaxThrottleBurst = 10000
)

// ThrottleState is one agent's running throttle.
type ThrottleState struct {
	Rate   float64   // messages per second
	Burst  int       // bucket size
	Until  time.Time // the throttle ends here
	Tokens float64   // messages it may send now
}

// bucket is a token bucket: tokens refill at rate per second up to burst; a send takes one.
type bucket struct {
	rate, burst, tokens float64
	last, until         time.Time
}

func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(b.burst, b.tokens+dt*b.rate)
		b.last = now
	}
}

// throttles is the table of throttled agents: bounded, every entry ends at its until. A pure
// core (now is a parameter) under one mutex.
type throttles struct {
	mu      sync.Mutex
	max     int
	m       map[peer.ID]*bucket
	evicted uint64
}

func newThrottles(max int) *throttles {
	return &throttles{max: max, m: map[peer.ID]*bucket{}}
}

func validThrottle(rate float64, burst int) error {
	if p := throttleProblem(rate, burst); p != "" {
		return fmt.Errorf("agentproto: throttle: %s: %w", p, ErrInvalidArgument)
	}
	return nil
}

// throttleProblem is what is wrong with a throttle's rate or burst, or "".
func throttleProblem(rate float64, burst int) string {
	if !(rate >= MinThrottleRate && rate <= MaxThrottleRate) {
		return fmt.Sprintf("rate %v messages/s not in [1/3600, %d]", rate, MaxThrottleRate)
	}
	if burst < 1 || burst > MaxThrottleBurst {
		return fmt.Sprintf("burst %d not in 1..%d", burst, MaxThrottleBurst)
	}
	return ""
}

// set starts or renews p's throttle. A new bucket starts full; a renewed one keeps what is
// left (capped by the new burst). An until not after now removes it. It returns the agent
// dropped to make room, if any.
func (t *throttles) set(p peer.ID, rate float64, burst int, until, now time.Time) (peer.ID, error) {
	if err := validThrottle(rate, burst); err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !until.After(now) {
		delete(t.m, p)
		return "", nil
	}
	if b := t.m[p]; b != nil {
		b.refill(now)
		b.rate, b.burst, b.until = rate, float64(burst), until
		b.tokens = math.Min(b.tokens, b.burst)
		return "", nil
	}
	var evicted peer.ID
	if len(t.m) >= t.max {
		evicted = t.makeRoom(now)
	}
	t.m[p] = &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now, until: until}
	return evicted, nil
}

// makeRoom drops the expired entries and, if the table is still full, the one that ends first
// (it has the least throttle left to lose).
func (t *throttles) makeRoom(now time.Time) peer.ID {
	var first peer.ID
	var end time.Time
	for p, b := range t.m {
		if !now.Before(b.until) {
			delete(t.m, p)
		} else if first == "" || b.until.Before(end) {
			first, end = p, b.until
		}
	}
	if len(t.m) < t.max {
		return ""
	}
	delete(t.m, first)
	t.evicted++
	return first
}

// allow takes a token from p's bucket. It reports false, with the throttle and how long until
// the next token, when the bucket is empty. An agent without a running throttle is allowed.
func (t *throttles) allow(p peer.ID, now time.Time) (ok bool, th ThrottleState, wait time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.m[p]
	if b == nil {
		return true, ThrottleState{}, 0
	}
	if !now.Before(b.until) {
		delete(t.m, p)
		return true, ThrottleState{}, 0
	}
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true, ThrottleState{}, 0
	}
	wait = time.Duration(math.Ceil((1 - b.tokens) / b.rate * float64(time.Second)))
	return false, b.state(), wait
}

func (t *throttles) remove(p peer.ID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[p]
	delete(t.m, p)
	return ok
}

func (t *throttles) get(p peer.ID, now time.Time) (ThrottleState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.m[p]
	if b == nil || !now.Before(b.until) {
		return ThrottleState{}, false
	}
	b.refill(now)
	return b.state(), true
}

// prune drops the throttles that ended by now and returns how many run.
func (t *throttles) prune(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, b := range t.m {
		if !now.Before(b.until) {
			delete(t.m, p)
		}
	}
	return len(t.m)
}

func (b *bucket) state() ThrottleState {
	return ThrottleState{Rate: b.rate, Burst: int(b.burst), Until: b.until, Tokens: b.tokens}
}

// throttleRule names a throttle in a refusal: "response: throttled at 1 msg/s until <RFC 3339>".
func throttleRule(th ThrottleState) string {
	return fmt.Sprintf("response: throttled at %s msg/s until %s", strconv.FormatFloat(th.Rate, 'g', 4, 64),
		th.Until.UTC().Format(time.RFC3339))
}
