package agentproto

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/node/enforce"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

var tt0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestThrottleBucket(t *testing.T) {
	tb := newThrottles(16)
	const p = peer.ID("agent-a")
	if ok, _, _ := tb.allow(p, tt0); !ok {
		t.Fatal("an agent without a throttle was refused")
	}
	if _, err := tb.set(p, 2, 3, tt0.Add(10*time.Second), tt0); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the bucket starts full
		if ok, _, _ := tb.allow(p, tt0); !ok {
			t.Fatalf("send %d within the burst refused", i)
		}
	}
	ok, th, wait := tb.allow(p, tt0)
	if ok || th.Rate != 2 || th.Burst != 3 || !th.Until.Equal(tt0.Add(10*time.Second)) || wait != 500*time.Millisecond {
		t.Fatalf("send beyond the burst: ok=%v %+v wait %s", ok, th, wait)
	}
	if ok, _, _ := tb.allow(p, tt0.Add(499*time.Millisecond)); ok {
		t.Fatal("a token before 1/rate")
	}
	at := tt0.Add(500 * time.Millisecond)
	if ok, _, _ := tb.allow(p, at); !ok {
		t.Fatal("no token after 1/rate")
	}
	if ok, _, _ := tb.allow(p, at); ok {
		t.Fatal("two tokens after 1/rate")
	}
	// Renewal keeps the empty bucket (a renewed throttle is no fresh burst) and moves the end.
	if _, err := tb.set(p, 2, 3, tt0.Add(20*time.Second), at); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := tb.allow(p, at); ok {
		t.Fatal("renewal refilled the bucket")
	}
	// After a long pause the bucket holds burst tokens, not more.
	at = tt0.Add(15 * time.Second)
	for i := range 4 {
		if ok, _, _ := tb.allow(p, at); ok != (i < 3) {
			t.Fatalf("after a pause, send %d: ok=%v", i, ok)
		}
	}
	// At until the throttle ends: every send goes, and the entry is gone.
	at = tt0.Add(20 * time.Second)
	for range 100 {
		if ok, _, _ := tb.allow(p, at); !ok {
			t.Fatal("refused at until")
		}
	}
	if n := tb.prune(at); n != 0 {
		t.Fatalf("%d throttles after the end", n)
	}
	// An until not after now lifts a running throttle.
	_, _ = tb.set(p, 1, 1, at.Add(time.Minute), at)
	if _, err := tb.set(p, 1, 1, at, at); err != nil || tb.prune(at) != 0 {
		t.Fatalf("until = now did not lift: %v", err)
	}
	if !func() bool { _, _ = tb.set(p, 1, 1, at.Add(time.Minute), at); return tb.remove(p) }() || tb.remove(p) {
		t.Fatal("remove")
	}
}

func TestThrottleBadArguments(t *testing.T) {
	tb := newThrottles(4)
	for _, c := range []struct {
		rate  float64
		burst int
		want  string
	}{
		{0, 1, "rate 0"}, {-1, 1, "rate -1"}, {1e9, 1, "rate 1e+09"}, {MinThrottleRate / 2, 1, "rate"},
		{1, 0, "burst 0"}, {1, MaxThrottleBurst + 1, "burst 10001"},
	} {
		_, err := tb.set("a", c.rate, c.burst, tt0.Add(time.Minute), tt0)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("rate %v burst %d: %v", c.rate, c.burst, err)
		}
	}
	if tb.prune(tt0) != 0 {
		t.Fatal("a bad throttle was kept")
	}
}

func TestThrottleBound(t *testing.T) {
	tb := newThrottles(3)
	for i, p := range []peer.ID{"a", "b", "c"} {
		if ev, err := tb.set(p, 1, 1, tt0.Add(time.Duration(i+1)*time.Minute), tt0); err != nil || ev != "" {
			t.Fatalf("%s: evicted %q, %v", p, ev, err)
		}
	}
	// Full: "a" has ended by now, so it goes and nothing running is lost.
	now := tt0.Add(time.Minute)
	if ev, _ := tb.set("d", 1, 1, now.Add(time.Hour), now); ev != "" || tb.evicted != 0 {
		t.Fatalf("an expired throttle was there, yet %q was evicted", ev)
	}
	// Full of running throttles: the one that ends first ("b") goes.
	if ev, _ := tb.set("e", 1, 1, now.Add(time.Hour), now); ev != "b" || tb.evicted != 1 {
		t.Fatalf("evicted %q, want b", ev)
	}
	// Renewing a held agent needs no room.
	if ev, _ := tb.set("c", 1, 1, now.Add(time.Hour), now); ev != "" {
		t.Fatalf("renewal evicted %q", ev)
	}
	if n := tb.prune(now); n != 3 {
		t.Fatalf("%d throttles, max 3", n)
	}
	for i := range 1000 {
		_, _ = tb.set(peer.ID(rune('A'+i)), 1, 1, now.Add(time.Hour), now)
		if len(tb.m) > 3 {
			t.Fatalf("%d throttles held, max 3", len(tb.m))
		}
	}
}

// TestThrottleNeverExceedsRate: for random send times, the sends allowed in any interval
// [a, b] inside the throttle are at most burst + rate × (b − a) (the token bucket bound), and a
// sender that waits the announced time is allowed.
func TestThrottleNeverExceedsRate(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		rate, burst := 0.5+rng.Float64()*20, 1+rng.IntN(10)
		tb := newThrottles(4)
		until := tt0.Add(time.Minute)
		if _, err := tb.set("a", rate, burst, until, tt0); err != nil {
			t.Fatal(err)
		}
		var allowed []time.Time
		now := tt0
		for now.Before(until) {
			ok, _, wait := tb.allow("a", now)
			if ok {
				allowed = append(allowed, now)
			} else if rng.IntN(4) == 0 {
				if ok, _, _ := tb.allow("a", now.Add(wait)); !ok {
					t.Fatalf("seed %d: refused after waiting the announced %s", seed, wait)
				}
				allowed = append(allowed, now.Add(wait))
				now = now.Add(wait)
			}
			now = now.Add(time.Duration(rng.ExpFloat64() * float64(time.Second) / (2 * rate)))
		}
		for i := range allowed {
			for j := i; j < len(allowed); j++ {
				if lim := float64(burst) + rate*allowed[j].Sub(allowed[i]).Seconds(); float64(j-i+1) > lim+1e-9 {
					t.Fatalf("seed %d: %d sends in %s at %.2f/s burst %d", seed, j-i+1, allowed[j].Sub(allowed[i]), rate, burst)
				}
			}
		}
	}
}

// TestRouterThrottle: a throttled agent's sends beyond its bucket are refused first thing at
// its node with code throttled, a rule naming the rate and end, and a telemetry record; within
// the bucket they go on to the other checks (here: the sender holds no session, so
// sender_inactive). The throttle ends at until, and a quarantine supersedes it.
func TestRouterThrottle(t *testing.T) {
	f := newFixture(t)
	key := f.register("alpha", time.Hour)
	nh, srv := newServer(t, f, nil)
	var clock atomic.Pointer[time.Time]
	start := time.Now()
	clock.Store(&start)
	now := func() time.Time { return *clock.Load() }
	advance := func(d time.Duration) { n := now().Add(d); clock.Store(&n) }
	var mu sync.Mutex
	var recs []telemetry.Record
	rc := DefaultRouterConfig()
	rc.Logger, rc.Now, rc.MaxThrottled = testLogger(t), now, 2
	rc.Record = func(r telemetry.Record) { mu.Lock(); recs = append(recs, r); mu.Unlock() }
	r, err := NewRouter(srv, rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })

	ah := newHost(t, key, nil, false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ah.Connect(ctx, info(nh)); err != nil {
		t.Fatal(err)
	}
	pool := NewPool(ah, SendProtocol, false)
	t.Cleanup(pool.Close)
	send := func() *MsgRefusal {
		t.Helper()
		resp, err := pool.Call(ctx, nh.ID(), &Send{To: "beta", Capability: "ask", Body: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		ref, ok := resp.(*MsgRefusal)
		if !ok {
			t.Fatalf("answer %T", resp)
		}
		return ref
	}
	p := ah.ID()
	if ref := send(); ref.Code != CodeSenderInactive {
		t.Fatalf("unthrottled: %+v", ref)
	}
	until := now().Add(10 * time.Second)
	if err := r.Throttle(p, 1, 2, until); err != nil {
		t.Fatal(err)
	}
	if err := r.Throttle(p, 0, 2, until); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("rate 0: %v", err)
	}
	for i := range 2 {
		if ref := send(); ref.Code != CodeSenderInactive {
			t.Fatalf("send %d within the burst: %+v", i, ref)
		}
	}
	ref := send()
	wantRule := "response: throttled at 1 msg/s until " + until.UTC().Format(time.RFC3339)
	if ref.Code != CodeThrottled || ref.Hop != HopSenderNode || ref.Rule != wantRule ||
		!strings.Contains(ref.Reason, "next send is allowed in 1s") {
		t.Fatalf("beyond the burst: %+v", ref)
	}
	mu.Lock()
	last := recs[len(recs)-1]
	mu.Unlock()
	if last.Outcome != CodeThrottled || last.Agent != "alpha" || last.Kind != telemetry.KindSend || last.Hop != "sender-node" {
		t.Fatalf("telemetry: %+v", last)
	}
	if st, ok := r.Throttled(p); !ok || st.Rate != 1 || st.Burst != 2 || st.Tokens >= 1 {
		t.Fatalf("Throttled: %+v %v", st, ok)
	}
	advance(time.Second)
	if ref := send(); ref.Code != CodeSenderInactive {
		t.Fatalf("one token after 1 s: %+v", ref)
	}
	if ref := send(); ref.Code != CodeThrottled {
		t.Fatalf("a second token after 1 s: %+v", ref)
	}
	advance(until.Sub(now()))
	for i := range 5 {
		if ref := send(); ref.Code != CodeSenderInactive {
			t.Fatalf("send %d at until: %+v", i, ref)
		}
	}
	if r.ThrottledCount() != 0 {
		t.Fatal("the ended throttle is still held")
	}

	// A quarantine supersedes the throttle; an expiry (renewable) does not.
	_ = r.Throttle(p, 1, 1, now().Add(time.Minute))
	r.CutOff(p, enforce.ReasonExpired)
	if _, ok := r.Throttled(p); !ok {
		t.Fatal("an expiry lifted the throttle")
	}
	r.CutOff(p, enforce.ReasonQuarantined)
	if _, ok := r.Throttled(p); ok {
		t.Fatal("a quarantine left the throttle")
	}
	// Bounded: MaxThrottled 2.
	for _, q := range []peer.ID{"q1", "q2", "q3", p} {
		_ = r.Throttle(q, 1, 1, now().Add(time.Minute))
	}
	if n := r.ThrottledCount(); n != 2 {
		t.Fatalf("%d throttled, max 2", n)
	}
	if !r.Unthrottle(p) || r.Unthrottle(p) {
		t.Fatal("Unthrottle")
	}
	if ref := send(); ref.Code != CodeSenderInactive {
		t.Fatalf("after Unthrottle: %+v", ref)
	}
}

// TestRouterConfigThrottles: RouterConfig.Throttles are running when NewRouter returns (an
// ended one is ignored); a bad one is refused naming its index, and nothing starts.
func TestRouterConfigThrottles(t *testing.T) {
	base := DefaultRouterConfig()
	base.Now = func() time.Time { return tt0 }
	until := tt0.Add(time.Minute)
	for _, c := range []struct {
		name string
		ts   []ThrottleSpec
		want string
	}{
		{"no peer", []ThrottleSpec{{Rate: 1, Burst: 1, Until: until}}, "throttles[0]: peer must be set"},
		{"bad rate", []ThrottleSpec{{Peer: "a", Rate: 1, Burst: 1, Until: until}, {Peer: "b", Rate: 0, Burst: 1, Until: until}}, "throttles[1] (" + peer.ID("b").String() + "): rate 0 messages/s not in"},
		{"bad burst", []ThrottleSpec{{Peer: "a", Rate: 1, Burst: 0, Until: until}}, "throttles[0] (" + peer.ID("a").String() + "): burst 0 not in 1..10000"},
		{"more than max", []ThrottleSpec{{Peer: "a", Rate: 1, Burst: 1}, {Peer: "b", Rate: 1, Burst: 1}, {Peer: "c", Rate: 1, Burst: 1}}, "throttles: 3, more than max_throttled 2"},
	} {
		cfg := base
		cfg.MaxThrottled = 2
		cfg.Throttles = c.ts
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}

	f := newFixture(t)
	_, srv := newServer(t, f, nil)
	cfg := base
	cfg.Logger = testLogger(t)
	cfg.Throttles = []ThrottleSpec{{Peer: "running", Rate: 0.5, Burst: 3, Until: until}, {Peer: "ended", Rate: 1, Burst: 1, Until: tt0}}
	r, err := NewRouter(srv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if st, ok := r.Throttled("running"); !ok || st.Rate != 0.5 || st.Burst != 3 || !st.Until.Equal(until) || st.Tokens != 3 {
		t.Fatalf("running: %+v %v", st, ok)
	}
	if _, ok := r.Throttled("ended"); ok {
		t.Fatal("an ended throttle was started")
	}
	if n := r.ThrottledCount(); n != 1 {
		t.Fatalf("%d throttled, want 1", n)
	}
}
