package monitor

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/agent"
	"github.com/vigil-mesh/vigil/identity"
)

// testMesh and testBackend are an in-memory twin of agents on a mesh, behaving like the documented
// agent.Client: Send is authorised by the sender's capabilities ("send:<to>" or "send:*") and the
// destination's state and refused with *agent.RefusedError naming the code, rule and hop;
// delivery runs the destination's handler for the capability (or its default handler); Report
// records events; Notify carries connection state changes.
type testMesh struct {
	mu     sync.Mutex
	agents map[string]*testBackend
	node   identity.ID
	seq    int
}

func newTestMesh(t testing.TB) *testMesh {
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testMesh{agents: map[string]*testBackend{}, node: k.ID()}
}

type testBackend struct {
	mesh   *testMesh
	id     identity.ID
	notify chan agent.ConnEvent

	mu       sync.Mutex
	reg      agent.Registration
	handlers map[string]agent.Handler
	events   []agent.Event
	sent     []string // "to/capability/body"
	cutOff   bool
	throttle string        // when set, the rule of a throttle that refuses every send (code throttled)
	reported chan struct{} // closed and replaced on every Report
}

var _ Backend = (*testBackend)(nil)

// add registers an agent named name holding caps, attached and active.
func (m *testMesh) add(t testing.TB, name string, caps ...string) *testBackend {
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{mesh: m, id: k.ID(), notify: make(chan agent.ConnEvent, 16),
		handlers: map[string]agent.Handler{}, reported: make(chan struct{}),
		reg: agent.Registration{Name: name, SpiffeID: "spiffe://test.local/agent/" + name, Status: "active",
			Labels: map[string]string{"team": "test"}, Capabilities: caps, ExpiresAt: time.Now().Add(time.Hour).UTC(),
			Node: m.node}}
	m.mu.Lock()
	m.agents[name] = b
	m.mu.Unlock()
	return b
}

func (b *testBackend) ID() identity.ID { return b.id }

func (b *testBackend) Registration() agent.Registration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reg
}

func (b *testBackend) Send(ctx context.Context, to, capability string, body []byte) (agent.Receipt, error) {
	start := time.Now()
	b.mu.Lock()
	from, caps, cut, throttle := b.reg.Name, b.reg.Capabilities, b.cutOff, b.throttle
	b.sent = append(b.sent, to+"/"+capability+"/"+string(body))
	b.mu.Unlock()
	if throttle != "" {
		return agent.Receipt{}, &agent.RefusedError{Code: "throttled", Rule: throttle, Hop: "sender-node", Reason: "the next send is allowed in 1s"}
	}
	if cut {
		return agent.Receipt{}, &agent.RefusedError{Code: "sender_inactive", Rule: "sender revoked", Hop: "sender-node", Reason: "agent " + from + " is revoked"}
	}
	if !slices.Contains(caps, "send:"+to) && !slices.Contains(caps, "send:*") {
		return agent.Receipt{}, &agent.RefusedError{Code: "no_capability", Rule: fmt.Sprintf("capability send:%s not held by %s", to, from), Hop: "sender-node", Reason: "deny by default"}
	}
	b.mesh.mu.Lock()
	dst := b.mesh.agents[to]
	b.mesh.seq++
	id := fmt.Sprintf("m-%d", b.mesh.seq)
	b.mesh.mu.Unlock()
	if dst == nil {
		return agent.Receipt{}, &agent.RefusedError{Code: "unknown_destination", Rule: "no agent named " + to, Hop: "sender-node", Reason: "unknown destination"}
	}
	dst.mu.Lock()
	h := dst.handlers[capability]
	if h == nil {
		h = dst.handlers[""]
	}
	dcut := dst.cutOff
	dst.mu.Unlock()
	if dcut {
		return agent.Receipt{}, &agent.RefusedError{Code: "destination_inactive", Rule: "destination revoked", Hop: "receiver-node", Reason: to + " is revoked"}
	}
	if h == nil {
		return agent.Receipt{}, &agent.RefusedError{Code: "no_handler", Rule: "no handler for " + capability, Hop: "receiver", Reason: "not handled"}
	}
	msg := agent.Message{ID: id, From: from, FromID: b.id, To: to, Capability: capability, Body: slices.Clone(body), SentAt: time.Now()}
	if err := h(ctx, msg); err != nil {
		return agent.Receipt{}, &agent.RefusedError{Code: "handler_failed", Rule: "handler", Hop: "receiver", Reason: err.Error()}
	}
	return agent.Receipt{ID: id, Latency: time.Since(start)}, nil
}

func (b *testBackend) Handle(capability string, h agent.Handler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.handlers[capability] = h
}

func (b *testBackend) Report(ctx context.Context, events ...agent.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, events...)
	close(b.reported)
	b.reported = make(chan struct{})
	return nil
}

func (b *testBackend) Notify() <-chan agent.ConnEvent { return b.notify }

// cut cuts the agent off as its node would on revocation.
func (b *testBackend) cut(reason string) {
	b.mu.Lock()
	b.cutOff = true
	b.reg.Status = "revoked"
	b.mu.Unlock()
	b.notify <- agent.ConnEvent{State: agent.StateCutOff, Node: b.mesh.node, Reason: reason, At: time.Now()}
}

// snapshot returns a copy of the reported events.
func (b *testBackend) snapshot() []agent.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.events)
}

// waitEvents waits until pred holds over the reported events.
func (b *testBackend) waitEvents(t testing.TB, d time.Duration, what string, pred func([]agent.Event) bool) []agent.Event {
	t.Helper()
	deadline := time.After(d)
	for {
		b.mu.Lock()
		evs, ch := slices.Clone(b.events), b.reported
		b.mu.Unlock()
		if pred(evs) {
			return evs
		}
		select {
		case <-ch:
		case <-deadline:
			var names []string
			for _, e := range evs {
				names = append(names, e.Kind+"/"+e.Name)
			}
			t.Fatalf("timed out waiting for %s; events: %s", what, strings.Join(names, ", "))
		}
	}
}
