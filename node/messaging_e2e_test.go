package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/vigil-mesh/vigil/agent"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
	"github.com/vigil-mesh/vigil/node/agentproto"
	"github.com/vigil-mesh/vigil/node/enforce"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

// registerWith registers an agent with the given capabilities and labels and waits until every
// running node admits it.
func (c *e2eCluster) registerWith(name string, caps []string, labels map[string]string) identity.PrivateKey {
	c.tb.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.propose(c.nodes[0], &identity.RegisterAgent{Name: name, Key: k.Public(), Labels: labels,
		Capabilities: caps, ExpiresAt: time.Now().Add(time.Hour)})
	c.waitAdmits(k, enforce.ReasonAgent)
	return k
}

func (c *e2eCluster) waitAdmits(k identity.PrivateKey, want enforce.Reason) {
	c.tb.Helper()
	for _, n := range c.nodes {
		if n != nil {
			waitUntil(c.tb, n.cfg.Node.Name+" to decide "+want.String(), func() bool { return n.gater.Decide(k.ID().Peer()) == want })
		}
	}
}

// nodeAddr is node n's libp2p multiaddr with /p2p/<id>, as an agent configures it.
func nodeAddr(n *Node) string {
	return n.Host().Addrs()[0].String() + "/p2p/" + n.ID().String()
}

func connectAgent(t testing.TB, k identity.PrivateKey, nodes ...*Node) *agent.Client {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Key = k
	for _, n := range nodes {
		cfg.Nodes = append(cfg.Nodes, nodeAddr(n))
	}
	cfg.ReconnectMin, cfg.ReconnectMax = 20*time.Millisecond, 500*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := agent.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// waitAttached waits until node n holds a session with agent k.
func waitAttached(t testing.TB, n *Node, k identity.PrivateKey) {
	t.Helper()
	waitUntil(t, n.cfg.Node.Name+" to hold a session with the agent", func() bool { return n.Router().Attached(k.ID().Peer()) })
}

func wantRefused(t *testing.T, err error, code, hop, ruleContains string) *agent.RefusedError {
	t.Helper()
	var re *agent.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a *RefusedError %s at %s", err, code, hop)
	}
	if re.Code != code || re.Hop != hop || !strings.Contains(re.Rule, ruleContains) {
		t.Fatalf("refusal = %+v, want code %s hop %s rule containing %q", re, code, hop, ruleContains)
	}
	return re
}

func waitState(t *testing.T, cl *agent.Client, want agent.ConnState) agent.ConnEvent {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-cl.Notify():
			if e.State == want {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event", want)
		}
	}
}

// TestE2EMessaging: two agents on different nodes exchange messages through the SDK; a message
// without the capability, to an unknown agent or with a bad capability is refused at the
// sender's node with the rule named; a label grant and a local delivery work; a handler's error
// and a missing handler come back to the sender; both nodes' telemetry records it all.
func TestE2EMessaging(t *testing.T) {
	c := startE2ECluster(t, 3)
	pk := c.registerWith("planner", []string{"ask:worker", "ping:site=north"}, nil)
	wk := c.registerWith("worker", []string{"reply:planner"}, map[string]string{"site": "north"})
	lk := c.registerWith("local", nil, map[string]string{"site": "north"})
	planner := connectAgent(t, pk, c.nodes[0])
	worker := connectAgent(t, wk, c.nodes[1])
	local := connectAgent(t, lk, c.nodes[0])
	if reg := worker.Registration(); reg.Name != "worker" || reg.Labels["site"] != "north" || reg.Status != "active" {
		t.Fatalf("worker registration %+v", reg)
	}
	got := make(chan agent.Message, 4)
	worker.Handle("ask", func(_ context.Context, m agent.Message) error { got <- m; return nil })
	worker.Handle("ping", func(context.Context, agent.Message) error { return errors.New("busy") })
	local.Handle("", func(_ context.Context, m agent.Message) error { got <- m; return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	rc, err := planner.Send(ctx, "worker", "ask", []byte("hello"))
	if err != nil {
		t.Fatalf("planner → worker: %v", err)
	}
	m := <-got
	if m.From != "planner" || m.To != "worker" || m.Capability != "ask" || string(m.Body) != "hello" || m.ID != rc.ID ||
		m.FromID != pk.ID() {
		t.Fatalf("delivered %+v (receipt %+v)", m, rc)
	}
	// By peer ID too.
	if _, err := planner.Send(ctx, wk.ID().String(), "ask", []byte("again")); err != nil {
		t.Fatalf("send by peer ID: %v", err)
	}
	<-got

	// Label grant ping:site=north, delivered locally on node-1.
	if _, err := planner.Send(ctx, "local", "ping", []byte("p")); err != nil {
		t.Fatalf("planner → local (label grant, same node): %v", err)
	}
	if m := <-got; m.To != "local" || m.Capability != "ping" {
		t.Fatalf("local got %+v", m)
	}

	_, err = worker.Send(ctx, "planner", "ask", []byte("x"))
	wantRefused(t, err, agentproto.CodeNoCapability, "sender-node", "capability ask:planner not held by worker")
	_, err = planner.Send(ctx, "nobody", "ask", nil)
	wantRefused(t, err, agentproto.CodeUnknownDestination, "sender-node", "registered agent")
	// Registered, allowed, but attached nowhere: refused, twice (the second from the missing cache).
	c.registerWith("idle", nil, map[string]string{"site": "north"})
	for range 2 {
		_, err = planner.Send(ctx, "idle", "ping", nil)
		wantRefused(t, err, agentproto.CodeDestinationUnreachable, "sender-node", "attached")
	}
	_, err = planner.Send(ctx, "local", "ask", nil)
	wantRefused(t, err, agentproto.CodeNoCapability, "sender-node", "ask:local")
	_, err = planner.Send(ctx, "worker", "ping", nil)
	re := wantRefused(t, err, agentproto.CodeHandlerError, "receiver", "handler")
	if re.Reason != "busy" {
		t.Fatalf("handler error reason %q", re.Reason)
	}
	_, err = worker.Send(ctx, "planner", "reply", nil)
	wantRefused(t, err, agentproto.CodeNoHandler, "receiver", "handles")
	// And back: the worker answers once the planner handles "reply".
	planner.Handle("reply", func(_ context.Context, m agent.Message) error { got <- m; return nil })
	if _, err := worker.Send(ctx, "planner", "reply", []byte("answer")); err != nil {
		t.Fatalf("worker → planner: %v", err)
	}
	if m := <-got; m.From != "worker" || string(m.Body) != "answer" {
		t.Fatalf("planner got %+v", m)
	}
	if _, err := planner.Send(ctx, "worker", "ask:x", nil); !errors.Is(err, agent.ErrInvalidArgument) {
		t.Fatalf("capability with a target: %v", err)
	}
	if _, err := planner.Send(ctx, "worker", "ask", make([]byte, agent.MaxBodySize+1)); !errors.Is(err, agent.ErrInvalidArgument) {
		t.Fatalf("oversized body: %v", err)
	}

	if err := worker.Report(ctx, agent.Event{Kind: "tool_call", Name: "search"}, agent.Event{Kind: "metric", Name: "cpu_usage", Value: 42}); err != nil {
		t.Fatalf("report: %v", err)
	}
	if err := worker.Report(ctx, agent.Event{}); !errors.Is(err, agent.ErrInvalidArgument) {
		t.Fatalf("report without kind: %v", err)
	}

	// Telemetry: node-1 recorded the planner's sends (ok and refused), node-2 the worker's
	// receipts, refusals and events.
	n1 := c.nodes[0].Telemetry().Query(telemetry.Query{Agent: "planner"})
	var ok, refused int
	for _, r := range n1 {
		if r.Kind == telemetry.KindSend && r.Outcome == telemetry.OutcomeOK {
			ok++
		}
		if r.Kind == telemetry.KindSend && r.Outcome == agentproto.CodeUnknownDestination && r.Hop == "sender-node" {
			refused++
		}
	}
	if ok != 3 || refused != 1 {
		t.Fatalf("node-1 planner records: %d ok sends, %d unknown-destination refusals; want 3, 1: %+v", ok, refused, n1)
	}
	n2 := c.nodes[1].Telemetry().Query(telemetry.Query{Agent: "worker"})
	kinds := map[string]int{}
	for _, r := range n2 {
		kinds[r.Kind+"/"+r.Outcome]++
	}
	if kinds["receive/ok"] != 2 || kinds["send/ok"] != 1 || kinds["send/no_capability"] != 1 || kinds["event/ok"] != 2 || kinds["receive/handler_error"] != 1 {
		t.Fatalf("node-2 worker records %v", kinds)
	}
	code, body := get(t, c.nodes[0], "/metrics")
	for _, want := range []string{`vigil_agent_messages_total{kind="send",outcome="ok"} 3`,
		`vigil_agent_messages_total{kind="send",outcome="destination_unreachable"} 2`,
		`vigil_agent_messages_total{kind="receive",outcome="ok"} 2`,
		// Every locate answer carried a valid proof: the worker's node proved its session.
		`vigil_agent_locate_unproven_total{reason="no_proof"} 0`,
		`vigil_agent_locate_unproven_total{reason="bad_signature"} 0`,
		`vigil_agent_locate_unproven_total{reason="stale"} 0`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("node-1 /metrics lacks %s", want)
		}
	}
	if _, _, _, total := c.nodes[2].Telemetry().Stats(); total != 0 {
		t.Fatalf("node-3 recorded %d records for agents it does not hold", total)
	}
}

// TestE2ERevokedAgent: a message to a revoked agent is refused at the sender's node; the
// revoked agent's session is closed and its Notify reports StateCutOff with the node's reason;
// its Send then fails at once.
func TestE2ERevokedAgent(t *testing.T) {
	c := startE2ECluster(t, 3)
	pk := c.registerWith("planner", []string{"ask:*"}, nil)
	wk := c.registerWith("worker", []string{"ask:*"}, nil)
	planner := connectAgent(t, pk, c.nodes[0])
	worker := connectAgent(t, wk, c.nodes[1])
	worker.Handle("", func(context.Context, agent.Message) error { return nil })
	waitState(t, worker, agent.StateConnected)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := planner.Send(ctx, "worker", "ask", nil); err != nil {
		t.Fatal(err)
	}
	c.propose(c.nodes[2], &identity.RevokeAgent{Name: "worker", Reason: "exfiltration suspected"})
	e := waitState(t, worker, agent.StateCutOff)
	if !strings.Contains(e.Reason, "exfiltration suspected") || !strings.Contains(e.Reason, "revoked") {
		t.Fatalf("cut-off reason %q", e.Reason)
	}
	c.converge()
	_, err := planner.Send(ctx, "worker", "ask", nil)
	wantRefused(t, err, agentproto.CodeDestinationInactive, "sender-node", "destination must be active")
	_, err = worker.Send(ctx, "planner", "ask", nil)
	wantRefused(t, err, agentproto.CodeSenderInactive, "sender-node", "sender must be active")
}

// TestE2ERelayCheckedAtReceiver: a node that relays a message its sender is not allowed to send
// (a stale or compromised sender node) is refused by the destination's node; a relay from a peer
// that is not a node is refused too.
func TestE2ERelayCheckedAtReceiver(t *testing.T) {
	c := startE2ECluster(t, 2)
	pk := c.registerWith("planner", []string{"ask:worker"}, nil)
	wk := c.registerWith("worker", nil, nil)
	worker := connectAgent(t, wk, c.nodes[1])
	worker.Handle("", func(context.Context, agent.Message) error { return nil })
	waitAttached(t, c.nodes[1], wk)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	relay := agentproto.NewPool(c.nodes[0].Host(), agentproto.RelayProtocol, false)
	defer relay.Close()
	call := func(from, to identity.PrivateKey, capability string) agentproto.Message {
		resp, err := relay.Call(ctx, c.nodes[1].ID().Peer(), &agentproto.Relay{ID: "x1", From: from.ID().Peer(), To: to.ID().Peer(),
			Capability: capability, SentAt: time.Now(), Body: []byte("b")})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// The honest case through the relay protocol works.
	if r, ok := call(pk, wk, "ask").(*agentproto.Receipt); !ok || r.ID != "x1" {
		t.Fatalf("honest relay answered %#v", r)
	}
	// node-1 claims the worker may send to the planner (it may not), and that the planner may
	// "delete" the worker (it may not).
	for _, tc := range []struct {
		from, to identity.PrivateKey
		cap      string
	}{{wk, pk, "ask"}, {pk, wk, "delete"}} {
		r, ok := call(tc.from, tc.to, tc.cap).(*agentproto.MsgRefusal)
		if !ok || r.Code != agentproto.CodeNoCapability || r.Hop != agentproto.HopReceiverNode {
			t.Fatalf("forged relay answered %#v", r)
		}
	}
	// An agent (admitted by the gater, but not a node) cannot relay.
	ah := newAgentHost(t, pk)
	ah.Peerstore().AddAddrs(c.nodes[1].ID().Peer(), c.nodes[1].Host().Addrs(), time.Hour)
	ap := agentproto.NewPool(ah, agentproto.RelayProtocol, false)
	defer ap.Close()
	resp, err := ap.Call(ctx, c.nodes[1].ID().Peer(), &agentproto.Relay{ID: "x2", From: pk.ID().Peer(), To: wk.ID().Peer(), Capability: "ask", SentAt: time.Now()})
	if r, ok := resp.(*agentproto.MsgRefusal); err != nil || !ok || r.Code != agentproto.CodeNotNode {
		t.Fatalf("relay from an agent: %#v, %v", resp, err)
	}
	recs := c.nodes[1].Telemetry().Query(telemetry.Query{Agent: "worker"})
	refusals := 0
	for _, r := range recs {
		if r.Outcome == agentproto.CodeNoCapability && r.Hop == "receiver-node" {
			refusals++
		}
	}
	// wk→pk is recorded under the planner (the destination); pk→wk "delete" under the worker.
	if refusals != 1 {
		t.Fatalf("receiver-node refusals recorded for worker: %d: %+v", refusals, recs)
	}
}

// TestE2EAgentReconnectsAfterNodeRestart: the node an agent is attached to restarts; the client
// reports Connecting, reattaches by itself and messages flow again.
func TestE2EAgentReconnectsAfterNodeRestart(t *testing.T) {
	c := startE2ECluster(t, 3)
	pk := c.registerWith("planner", []string{"ask:worker"}, nil)
	wk := c.registerWith("worker", nil, nil)
	planner := connectAgent(t, pk, c.nodes[0])
	worker := connectAgent(t, wk, c.nodes[1])
	worker.Handle("ask", func(context.Context, agent.Message) error { return nil })
	waitState(t, worker, agent.StateConnected)
	c.stop(1)
	waitState(t, worker, agent.StateConnecting)
	c.start(1)
	e := waitState(t, worker, agent.StateConnected)
	if e.Node != c.nodes[1].ID() {
		t.Fatalf("reattached to %s", e.Node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := planner.Send(ctx, "worker", "ask", []byte("after restart")); err != nil {
		t.Fatalf("send after restart: %v", err)
	}
}

// TestE2EKeyRotation: the agent requests a rotation; the operator verifies it and commits
// RotateAgentKey; the old key is cut off and refused, the new key attaches, and the audit names
// both keys.
func TestE2EKeyRotation(t *testing.T) {
	c := startE2ECluster(t, 2)
	old := c.registerWith("worker", nil, nil)
	cl := connectAgent(t, old, c.nodes[1])
	waitState(t, cl, agent.StateConnected)
	newKey, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemReq, err := cl.RequestRotation(newKey)
	if err != nil {
		t.Fatal(err)
	}
	req, err := agent.ParseRotationRequest(pemReq)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Verify(); err != nil {
		t.Fatal(err)
	}
	if req.Name != "worker" || !req.OldKey.Equal(old.Public()) || !req.NewKey.Equal(newKey.Public()) {
		t.Fatalf("request %+v", req)
	}
	c.propose(c.nodes[0], req.Command())
	waitState(t, cl, agent.StateCutOff)
	c.waitAdmits(old, enforce.ReasonUnknown)
	// The old key can no longer attach (the gater refuses its handshake, so Connect keeps trying
	// until its context ends).
	oldCfg := agent.DefaultConfig()
	oldCfg.Key, oldCfg.Nodes = old, []string{nodeAddr(c.nodes[1])}
	octx, ocancel := context.WithTimeout(context.Background(), time.Second)
	if oc, err := agent.Connect(octx, oldCfg); err == nil {
		oc.Close()
		t.Fatal("the rotated-out key attached")
	}
	ocancel()
	nc := connectAgent(t, newKey, c.nodes[1])
	if reg := nc.Registration(); reg.Name != "worker" {
		t.Fatalf("new key attached as %+v", reg)
	}
	var audit []identity.AuditEntry
	c.nodes[0].Consensus().Read(func(r *identity.Registry) { audit = r.Audit(identity.AuditQuery{Principal: "worker"}) })
	last := audit[len(audit)-1]
	subjects := strings.Join(last.Subjects, " ")
	if last.Kind != identity.KindRotateAgentKey || !strings.Contains(subjects, old.ID().String()) || !strings.Contains(subjects, newKey.ID().String()) {
		t.Fatalf("last audit entry %+v", last)
	}
}

// TestE2EMalformedFramesToNode: oversized and malformed frames on the messaging protocols of a
// live node end the stream (reset) without an answer or a crash; the node keeps serving.
func TestE2EMalformedFramesToNode(t *testing.T) {
	c := startE2ECluster(t, 1)
	pk := c.registerWith("planner", []string{"ask:*"}, nil)
	planner := connectAgent(t, pk, c.nodes[0])
	planner.Handle("", func(context.Context, agent.Message) error { return nil })
	ah := newAgentHost(t, pk)
	ai := addrInfo(c.nodes[0])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ah.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	for _, proto := range []protocol.ID{agentproto.SendProtocol, agentproto.RelayProtocol, agentproto.ReportProtocol,
		agentproto.LocateProtocol, agentproto.SessionProtocol} {
		for name, frame := range map[string][]byte{
			"4 GiB length": {0xff, 0xff, 0xff, 0xff, 1, 2, 3},
			"over the cap": binary.BigEndian.AppendUint32(nil, agentproto.MaxEnvelopeSize+1),
			"garbage":      {0, 0, 0, 3, 99, 1, 2},
			"truncated":    {0, 0, 0, 9, 16, 0, 5, 'a'},
		} {
			s, err := ah.NewStream(ctx, ai.ID, proto)
			if err != nil {
				t.Fatalf("%s: %v", proto, err)
			}
			_ = s.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = s.Write(frame)
			_ = s.CloseWrite()
			m, err := agentproto.ReadEnvelope(s)
			_ = s.Reset()
			if proto == agentproto.SessionProtocol {
				// The session protocol answers a bad attach request with a refusal, as /vigil/agent/1 does.
				if r, ok := m.(*agentproto.Refusal); err != nil || !ok || r.Code != agentproto.CodeBadRequest {
					t.Fatalf("%s %s: %#v %v", proto, name, m, err)
				}
				continue
			}
			if err == nil {
				t.Fatalf("%s %s: answered %#v", proto, name, m)
			}
		}
	}
	// Still serving: a real message goes through.
	if _, err := planner.Send(ctx, "planner", "ask", []byte("still here")); err != nil {
		t.Fatalf("send after the malformed frames: %v", err)
	}
}

// TestE2EAgentActivityAdminAPI: the admin API's AgentActivity answers an operator from the
// node's telemetry (a send and a refusal), and refuses an agent key.
func TestE2EAgentActivityAdminAPI(t *testing.T) {
	c := startE2ECluster(t, 1)
	pk := c.registerWith("planner", []string{"ask:planner"}, nil)
	planner := connectAgent(t, pk, c.nodes[0])
	planner.Handle("", func(context.Context, agent.Message) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := planner.Send(ctx, "planner", "ask", []byte("self")); err != nil {
		t.Fatal(err)
	}
	_, err := planner.Send(ctx, "planner", "tell", nil)
	wantRefused(t, err, agentproto.CodeNoCapability, "sender-node", "tell:planner")

	n := c.nodes[0]
	ac, err := client.Dial(n.AdminAddr().String(), n.ID().Peer(), c.op)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ac.AgentActivity(ctx, connect.NewRequest(&adminv1.AgentActivityRequest{Agent: "planner"}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range resp.Msg.Records {
		got = append(got, r.Kind+"/"+r.Action+"/"+r.Outcome)
	}
	if strings.Join(got, " ") != "receive/ask/ok send/ask/ok send/tell/no_capability" {
		t.Fatalf("activity %v", got)
	}
	agentClient, err := client.Dial(n.AdminAddr().String(), n.ID().Peer(), pk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agentClient.AgentActivity(ctx, connect.NewRequest(&adminv1.AgentActivityRequest{Agent: "planner"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("an agent key asked for activity: %v", err)
	}
}

// TestE2EAgentFailsOverToNextNode: the first configured node is down; Connect attaches to the
// next one.
func TestE2EAgentFailsOverToNextNode(t *testing.T) {
	c := startE2ECluster(t, 2)
	pk := c.registerWith("planner", nil, nil)
	down := nodeAddr(c.nodes[0])
	c.stop(0)
	cfg := agent.DefaultConfig()
	cfg.Key, cfg.Nodes = pk, []string{down, nodeAddr(c.nodes[1])}
	cfg.ReconnectMin, cfg.ReconnectMax = 10*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := agent.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.Registration().Node; got != c.nodes[1].ID() {
		t.Fatalf("attached to %s, want node-2", got)
	}
}

// TestE2ERegistrationUpdate: a renewal committed while the agent is attached reaches its client:
// Registration().ExpiresAt moves and Notify says "registration updated".
func TestE2ERegistrationUpdate(t *testing.T) {
	c := startE2ECluster(t, 2)
	k := c.registerWith("worker", nil, nil)
	cl := connectAgent(t, k, c.nodes[1])
	waitState(t, cl, agent.StateConnected)
	before := cl.Registration().ExpiresAt
	until := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	c.propose(c.nodes[0], &identity.RenewAgent{Name: "worker", ExpiresAt: until})
	e := waitState(t, cl, agent.StateConnected)
	if e.Reason != "registration updated" {
		t.Fatalf("event %+v", e)
	}
	if got := cl.Registration().ExpiresAt; !got.Equal(until) || got.Equal(before) {
		t.Fatalf("expires %s, want %s (was %s)", got, until, before)
	}
}
