package identity

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSingleOperatorCannotDoMofN: with M=2, each widening operation signed by one operator is
// refused with ErrInsufficientSignatures and succeeds with two.
func TestSingleOperatorCannotDoMofN(t *testing.T) {
	f := newFixture(t, 30, 3, 2)
	f.register("victim")
	f.mustApply(&RevokeAgent{Name: "victim", Reason: "test"}, f.ops[0])
	newOp := mustKey(t, f.rnd)
	cases := []struct {
		name string
		p    func() Payload
	}{
		{"add operator", func() Payload { return &AddOperator{Operator: OperatorEntry{"opz", newOp.Public()}} }},
		{"remove operator", func() Payload { return &RemoveOperator{Name: "opz"} }},
		{"reinstate", func() Payload {
			return &ReinstateAgent{Name: "victim", Key: mustKey(t, f.rnd).Public(), ExpiresAt: f.now.Add(time.Hour)}
		}},
		{"disable automated response", func() Payload { return &SetAutomatedResponse{Enabled: false} }},
		{"set threshold", func() Payload { return &SetThreshold{Threshold: 1} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.reg.Hash()
			wantErr(t, f.apply(tc.p(), f.ops[0]), ErrInsufficientSignatures)
			wantErr(t, f.apply(tc.p(), f.ops[2]), ErrInsufficientSignatures)
			if f.reg.Hash() != before {
				t.Fatal("rejected command changed state")
			}
			if err := f.apply(tc.p(), f.ops[0], f.ops[1]); err != nil {
				t.Fatalf("with two operators: %v", err)
			}
		})
	}
	if len(f.reg.Operators()) != 3 || f.reg.Threshold() != 1 {
		t.Fatalf("after: %s", f.reg)
	}
	// Enabling automated response needs one operator.
	f.mustApply(&SetAutomatedResponse{Enabled: true}, f.ops[0])
	if !f.reg.AutomatedResponse() {
		t.Fatal("not enabled")
	}
}

func TestSingleOperatorOps(t *testing.T) {
	f := newFixture(t, 31, 3, 3)
	k := f.register("a1")
	nk := mustKey(t, f.rnd)
	steps := []Payload{
		&QuarantineAgent{Name: "a1", Reason: "anomaly"},
		&ReleaseAgent{Name: "a1"},
		&RenewAgent{Name: "a1", ExpiresAt: f.now.Add(48 * time.Hour)},
		&RotateAgentKey{Name: "a1", NewKey: mustKey(t, f.rnd).Public()},
		&AdmitNode{Node: NodeEntry{Name: "node-2", Key: nk.Public(), Site: "site-b", Addrs: []string{"/ip4/127.0.0.1/udp/7400/quic-v1"}}},
		&RemoveNode{Name: "node-2"},
		&SetPolicy{Version: 1, Document: []byte("response: {dry_run: true}\n")},
		&RevokeAgent{Name: "a1", Reason: "done"},
	}
	for _, p := range steps {
		if err := f.apply(p, f.ops[2]); err != nil {
			t.Fatalf("%s by one operator: %v", p.Kind(), err)
		}
	}
	_ = k
}

func TestAgentLifecycle(t *testing.T) {
	f := newFixture(t, 32, 2, 2)
	k := f.register("a1")
	a, ok := f.reg.Agent("a1")
	if !ok || a.Status != StatusActive || a.ID != k.ID() || a.SPIFFE.String() != "spiffe://example.org/agent/a1" ||
		a.Labels["site"] != "a" || strings.Join(a.Capabilities, ",") != "call:x,send:b" || !a.RegisteredAt.Equal(f.now) {
		t.Fatalf("agent view %+v", a)
	}
	if b, ok := f.reg.AgentByID(k.ID()); !ok || b.Name != "a1" {
		t.Fatal("AgentByID")
	}
	if role, st, ok := f.reg.Principal(k.ID(), f.now); !ok || role != RoleAgent || st != StatusActive {
		t.Fatal("Principal active")
	}
	// Expiry via StatusAt and Principal.
	if a.StatusAt(a.ExpiresAt.Add(-1)) != StatusActive || a.StatusAt(a.ExpiresAt) != StatusExpired {
		t.Fatal("StatusAt boundary")
	}
	if _, st, _ := f.reg.Principal(k.ID(), a.ExpiresAt); st != StatusExpired {
		t.Fatal("Principal does not report expiry")
	}
	f.mustApply(&RenewAgent{Name: "a1", ExpiresAt: f.now.Add(3 * time.Hour)}, f.ops[0])
	if _, st, _ := f.reg.Principal(k.ID(), a.ExpiresAt); st != StatusActive {
		t.Fatal("renewal not effective")
	}
	// Quarantine is reported by Principal; release restores.
	f.mustApply(&QuarantineAgent{Name: "a1", Reason: "spike"}, f.ops[0])
	if _, st, _ := f.reg.Principal(k.ID(), f.now); st != StatusQuarantined {
		t.Fatal("quarantine")
	}
	wantErr(t, f.apply(&QuarantineAgent{Name: "a1"}, f.ops[0]), ErrInvalid)
	f.mustApply(&ReleaseAgent{Name: "a1"}, f.ops[0])
	wantErr(t, f.apply(&ReleaseAgent{Name: "a1"}, f.ops[0]), ErrInvalid)

	// Rotation: the old key is retired forever.
	k2 := mustKey(t, f.rnd)
	f.mustApply(&RotateAgentKey{Name: "a1", NewKey: k2.Public()}, f.ops[0])
	if _, st, ok := f.reg.Principal(k.ID(), f.now); ok || st != StatusRevoked {
		t.Fatal("rotated-out key still admitted")
	}
	if _, ok := f.reg.AgentByID(k2.ID()); !ok {
		t.Fatal("new key unknown")
	}
	wantErr(t, f.apply(&RegisterAgent{Name: "a2", Key: k.Public(), ExpiresAt: f.now.Add(time.Hour)}, f.ops[0]), ErrRevokedKey)
	wantErr(t, f.apply(&RotateAgentKey{Name: "a1", NewKey: k.Public()}, f.ops[0]), ErrRevokedKey)
	wantErr(t, f.apply(&RotateAgentKey{Name: "a1", NewKey: k2.Public()}, f.ops[0]), ErrExists)

	// Revocation is monotonic and keyed by name and key.
	f.mustApply(&RevokeAgent{Name: "a1", Reason: "compromised"}, f.ops[1])
	err := f.apply(&RevokeAgent{Name: "a1"}, f.ops[0])
	wantErr(t, err, ErrInvalid)
	if !strings.Contains(err.Error(), "already revoked") {
		t.Fatalf("message: %v", err)
	}
	if role, st, ok := f.reg.Principal(k2.ID(), f.now); !ok || role != RoleAgent || st != StatusRevoked {
		t.Fatal("revoked agent still active")
	}
	k3 := mustKey(t, f.rnd)
	wantErr(t, f.apply(&RegisterAgent{Name: "a1", Key: k3.Public(), ExpiresAt: f.now.Add(time.Hour)}, f.ops[0]), ErrRevokedName)
	wantErr(t, f.apply(&RegisterAgent{Name: "a9", Key: k2.Public(), ExpiresAt: f.now.Add(time.Hour)}, f.ops[0]), ErrRevokedKey)
	wantErr(t, f.apply(&RenewAgent{Name: "a1", ExpiresAt: f.now.Add(time.Hour)}, f.ops[0]), ErrInvalid)
	wantErr(t, f.apply(&RotateAgentKey{Name: "a1", NewKey: k3.Public()}, f.ops[0]), ErrInvalid)
	wantErr(t, f.apply(&QuarantineAgent{Name: "a1"}, f.ops[0]), ErrInvalid)

	// Reinstate: M-of-N, fresh key only.
	wantErr(t, f.apply(&ReinstateAgent{Name: "a1", Key: k3.Public(), ExpiresAt: f.now.Add(time.Hour)}, f.ops[0]), ErrInsufficientSignatures)
	wantErr(t, f.apply(&ReinstateAgent{Name: "a1", Key: k2.Public(), ExpiresAt: f.now.Add(time.Hour)}, f.ops...), ErrRevokedKey)
	wantErr(t, f.apply(&ReinstateAgent{Name: "nobody", Key: k3.Public(), ExpiresAt: f.now.Add(time.Hour)}, f.ops...), ErrNotFound)
	f.mustApply(&ReinstateAgent{Name: "a1", Key: k3.Public(), ExpiresAt: f.now.Add(time.Hour)}, f.ops...)
	if _, st, ok := f.reg.Principal(k3.ID(), f.now); !ok || st != StatusActive {
		t.Fatal("reinstated agent not active")
	}
	if _, _, ok := f.reg.Principal(k2.ID(), f.now); ok {
		t.Fatal("old key still known after reinstate")
	}
	wantErr(t, f.apply(&ReinstateAgent{Name: "a1", Key: mustKey(t, f.rnd).Public(), ExpiresAt: f.now.Add(time.Hour)}, f.ops...), ErrInvalid)
}

func TestRegisterRules(t *testing.T) {
	f := newFixture(t, 33, 1, 1)
	f.register("taken")
	opKey := f.ops[0].Public()
	nodeKey := f.nodes[0].Public()
	fresh := func() PublicKey { return mustKey(t, f.rnd).Public() }
	exp := f.now.Add(time.Hour)
	cases := []struct {
		name  string
		p     *RegisterAgent
		want  error
		field string
	}{
		{"bad name", &RegisterAgent{Name: "Bad", Key: fresh(), ExpiresAt: exp}, ErrInvalid, "name"},
		{"zero key", &RegisterAgent{Name: "a", ExpiresAt: exp}, ErrInvalid, "key"},
		{"expired", &RegisterAgent{Name: "a", Key: fresh(), ExpiresAt: f.now}, ErrInvalid, "expires_at"},
		{"no expiry", &RegisterAgent{Name: "a", Key: fresh()}, ErrInvalid, "expires_at"},
		{"bad label key", &RegisterAgent{Name: "a", Key: fresh(), ExpiresAt: exp, Labels: map[string]string{"Site": "x"}}, ErrInvalid, "labels"},
		{"control in label", &RegisterAgent{Name: "a", Key: fresh(), ExpiresAt: exp, Labels: map[string]string{"site": "x\ny"}}, ErrInvalid, "labels"},
		{"bad capability", &RegisterAgent{Name: "a", Key: fresh(), ExpiresAt: exp, Capabilities: []string{"has space"}}, ErrInvalid, "capabilities"},
		{"name exists", &RegisterAgent{Name: "taken", Key: fresh(), ExpiresAt: exp}, ErrExists, "name"},
		{"name is a node", &RegisterAgent{Name: "node-1", Key: fresh(), ExpiresAt: exp}, ErrExists, "name"},
		{"operator key", &RegisterAgent{Name: "a", Key: opKey, ExpiresAt: exp}, ErrExists, "key"},
		{"node key", &RegisterAgent{Name: "a", Key: nodeKey, ExpiresAt: exp}, ErrExists, "key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.reg.Hash()
			err := f.apply(tc.p, f.ops[0])
			wantErr(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name field %q", err, tc.field)
			}
			if f.reg.Hash() != before {
				t.Fatal("rejected command changed state")
			}
		})
	}
	wantErr(t, f.apply(&RevokeAgent{Name: "ghost"}, f.ops[0]), ErrNotFound)
}

func TestOperatorsAndThreshold(t *testing.T) {
	f := newFixture(t, 34, 2, 2)
	wantErr(t, f.apply(&RemoveOperator{Name: "opa"}, f.ops...), ErrInvalid) // would go below M=2
	wantErr(t, f.apply(&SetThreshold{Threshold: 3}, f.ops...), ErrInvalid)
	wantErr(t, f.apply(&SetThreshold{Threshold: 0}, f.ops...), ErrInvalid)
	wantErr(t, f.apply(&RemoveOperator{Name: "nobody"}, f.ops...), ErrNotFound)
	c := mustKey(t, f.rnd)
	wantErr(t, f.apply(&AddOperator{Operator: OperatorEntry{"opa", c.Public()}}, f.ops...), ErrExists)
	f.mustApply(&AddOperator{Operator: OperatorEntry{"opc", c.Public()}}, f.ops...)
	// The new operator's signature counts.
	f.mustApply(&SetThreshold{Threshold: 3}, append(f.ops, c)...)
	wantErr(t, f.apply(&SetThreshold{Threshold: 2}, f.ops...), ErrInsufficientSignatures)
	f.mustApply(&SetThreshold{Threshold: 2}, append(f.ops, c)...)
	f.mustApply(&RemoveOperator{Name: "opa"}, f.ops...)
	// A removed operator can sign nothing and its key is retired.
	wantErr(t, f.apply(&SetPolicy{Version: 1}, f.ops[0]), ErrUnauthorized)
	wantErr(t, f.apply(&AddOperator{Operator: OperatorEntry{"opa", f.ops[0].Public()}}, f.ops[1], c), ErrRevokedKey)
	if len(f.reg.Operators()) != 2 {
		t.Fatal("operator count")
	}
}

func TestNodesAndPolicy(t *testing.T) {
	f := newFixture(t, 35, 1, 1)
	nk := mustKey(t, f.rnd)
	wantErr(t, f.apply(&AdmitNode{Node: NodeEntry{Name: "n2", Key: nk.Public(), Addrs: []string{"not-an-addr"}}}, f.ops[0]), ErrInvalid)
	wantErr(t, f.apply(&AdmitNode{Node: NodeEntry{Name: "node-1", Key: nk.Public()}}, f.ops[0]), ErrExists)
	f.mustApply(&AdmitNode{Node: NodeEntry{Name: "n2", Key: nk.Public(), Voter: true}}, f.ops[0])
	if n, ok := f.reg.Node(nk.ID()); !ok || n.Name != "n2" || !n.Voter {
		t.Fatal("Node lookup")
	}
	if role, st, ok := f.reg.Principal(nk.ID(), f.now); !ok || role != RoleNode || st != StatusActive {
		t.Fatal("Principal node")
	}
	if role, _, ok := f.reg.Principal(f.ops[0].ID(), f.now); !ok || role != RoleOperator {
		t.Fatal("Principal operator")
	}
	f.mustApply(&RemoveNode{Name: "n2"}, f.ops[0])
	if _, _, ok := f.reg.Principal(nk.ID(), f.now); ok {
		t.Fatal("removed node still admitted")
	}
	if len(f.reg.Nodes()) != 1 {
		t.Fatal("Nodes")
	}
	wantErr(t, f.apply(&RemoveNode{Name: "n2"}, f.ops[0]), ErrNotFound)
	wantErr(t, f.apply(&AdmitNode{Node: NodeEntry{Name: "n2", Key: nk.Public()}}, f.ops[0]), ErrRevokedKey)

	wantErr(t, f.apply(&SetPolicy{Version: 2, Document: []byte("x")}, f.ops[0]), ErrVersionConflict)
	f.mustApply(&SetPolicy{Version: 1, Document: []byte("response: {dry_run: true}\n")}, f.ops[0])
	wantErr(t, f.apply(&SetPolicy{Version: 1, Document: []byte("y")}, f.ops[0]), ErrVersionConflict)
	if v, d := f.reg.Policy(); v != 1 || string(d) != "response: {dry_run: true}\n" {
		t.Fatal("policy")
	}
	// An invalid document is refused by the registry itself, naming the line and key, and
	// changes nothing (not the version, not the document).
	bad := f.apply(&SetPolicy{Version: 2, Document: []byte("monitoring:\n  enabled: false\n")}, f.ops[0])
	wantErr(t, bad, ErrInvalid)
	if !strings.Contains(bad.Error(), "line 2: monitoring.enabled") {
		t.Fatalf("error does not name the line and key: %v", bad)
	}
	if v, d := f.reg.Policy(); v != 1 || string(d) != "response: {dry_run: true}\n" {
		t.Fatal("refused policy changed the registry")
	}
	if _, _, ok := f.reg.Principal(mustKey(t, f.rnd).ID(), f.now); ok {
		t.Fatal("unknown key admitted")
	}
}

func TestAudit(t *testing.T) {
	f := newFixture(t, 36, 2, 1)
	k := f.register("a1")
	f.now = f.now.Add(time.Minute)
	f.register("a2")
	f.now = f.now.Add(time.Minute)
	k2 := mustKey(t, f.rnd)
	f.mustApply(&RotateAgentKey{Name: "a1", NewKey: k2.Public()}, f.ops[1])
	f.mustApply(&RevokeAgent{Name: "a1", Reason: "bad"}, f.ops[1])

	all := f.reg.Audit(AuditQuery{})
	if len(all) != 5 || all[0].Kind != KindGenesis || all[4].Kind != KindRevokeAgent {
		t.Fatalf("audit: %+v", all)
	}
	for i, e := range all {
		if e.Seq != uint64(i+1) || strings.Contains(e.Detail, "\n") {
			t.Fatal("seq or detail")
		}
	}
	byName := f.reg.Audit(AuditQuery{Principal: "a1"})
	if len(byName) != 3 || byName[1].Kind != KindRotateAgentKey {
		t.Fatalf("by name: %d", len(byName))
	}
	// Old key: register and rotate. New key: rotate and revoke.
	if n := len(f.reg.Audit(AuditQuery{Principal: k.ID().String()})); n != 2 {
		t.Fatalf("by old key: %d", n)
	}
	if n := len(f.reg.Audit(AuditQuery{Principal: k2.ID().String()})); n != 2 {
		t.Fatalf("by new key: %d", n)
	}
	// Signer index: ops[1] signed rotate and revoke.
	// ops[1] is a subject of genesis and signed rotate and revoke.
	if n := len(f.reg.Audit(AuditQuery{Principal: f.ops[1].ID().String()})); n != 3 {
		t.Fatalf("by signer: %d", n)
	}
	e := all[4]
	if len(e.Signers) != 1 || e.Signers[0] != f.ops[1].ID() || e.Subjects[0] != "a1" || e.Subjects[1] != k2.ID().String() {
		t.Fatalf("entry %+v", e)
	}
	// Time range [From, To) and limit.
	r := f.reg.Audit(AuditQuery{From: t0.Add(time.Minute), To: t0.Add(2 * time.Minute)})
	if len(r) != 1 || r[0].Seq != 3 {
		t.Fatalf("range: %+v", r)
	}
	if r := f.reg.Audit(AuditQuery{Limit: 2, AfterSeq: 1}); len(r) != 2 || r[0].Seq != 2 {
		t.Fatal("limit/after")
	}
	if r := f.reg.Audit(AuditQuery{Principal: "a1", From: t0.Add(2 * time.Minute)}); len(r) != 2 {
		t.Fatal("principal + range")
	}
	if len(f.reg.Audit(AuditQuery{Principal: "nobody"})) != 0 {
		t.Fatal("unknown principal")
	}
	// The newest entries, paging back with BeforeSeq, and the count of a selection.
	seqs := func(es []AuditEntry) (out []uint64) {
		for _, e := range es {
			out = append(out, e.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    AuditQuery
		want []uint64
	}{
		{"newest 2", AuditQuery{Limit: 2, Newest: true}, []uint64{4, 5}},
		{"newest 2 before 4", AuditQuery{Limit: 2, Newest: true, BeforeSeq: 4}, []uint64{2, 3}},
		{"newest 9 before 3", AuditQuery{Limit: 9, Newest: true, BeforeSeq: 3}, []uint64{1, 2}},
		{"before 1", AuditQuery{BeforeSeq: 1}, nil},
		{"oldest 2 before 5", AuditQuery{Limit: 2, BeforeSeq: 5}, []uint64{1, 2}},
		{"newest of a1", AuditQuery{Principal: "a1", Limit: 2, Newest: true}, []uint64{4, 5}},
		{"newest in range", AuditQuery{To: t0.Add(2 * time.Minute), Limit: 1, Newest: true}, []uint64{3}},
		{"after and before", AuditQuery{AfterSeq: 3, BeforeSeq: 3}, nil},
	} {
		if got := seqs(f.reg.Audit(tc.q)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: seqs %v, want %v", tc.name, got, tc.want)
		}
		if n := f.reg.AuditCount(tc.q); n != len(f.reg.Audit(AuditQuery{Principal: tc.q.Principal, From: tc.q.From, To: tc.q.To,
			AfterSeq: tc.q.AfterSeq, BeforeSeq: tc.q.BeforeSeq})) {
			t.Errorf("%s: count %d", tc.name, n)
		}
	}
}

func TestAutomatedRevocation(t *testing.T) {
	f := newFixture(t, 37, 2, 2)
	n2, n3 := mustKey(t, f.rnd), mustKey(t, f.rnd)
	f.mustApply(&AdmitNode{Node: NodeEntry{Name: "node-2", Key: n2.Public()}}, f.ops[0])
	f.mustApply(&AdmitNode{Node: NodeEntry{Name: "node-3", Key: n3.Public()}}, f.ops[0])
	vk := f.register("victim")
	if f.reg.RevokeQuorum() != DefaultRevokeQuorum {
		t.Fatal("default quorum")
	}
	sig := func(k PrivateKey) Signal { return f.signal(k, "victim", vk.Public(), f.now) }
	two := &AutoRevokeAgent{Name: "victim", Reason: "anomaly score 0.99", Signals: []Signal{sig(f.nodes[0]), sig(n2)}}
	wantErr(t, f.apply(two, f.nodes[0]), ErrUnauthorized) // automated response disabled
	f.mustApply(&SetAutomatedResponse{Enabled: true}, f.ops[0])
	one := &AutoRevokeAgent{Name: "victim", Reason: "x", Signals: []Signal{sig(f.nodes[0])}}
	wantErr(t, f.apply(one, f.nodes[0], n2), ErrInsufficientSignatures) // node signatures are not evidence
	wantErr(t, f.apply(two, f.ops[0], f.ops[1]), ErrUnauthorized)       // operators are not nodes
	wantErr(t, f.apply(two, f.nodes[0], mustKey(t, f.rnd)), ErrUnauthorized)
	wantErr(t, f.apply(&SetRevokeQuorum{Quorum: 1}, f.ops[0]), ErrInsufficientSignatures)
	f.mustApply(&SetRevokeQuorum{Quorum: 3}, f.ops...)
	wantErr(t, f.apply(two, f.nodes[0]), ErrInsufficientSignatures)
	three := &AutoRevokeAgent{Name: "victim", Reason: "anomaly", Signals: []Signal{sig(f.nodes[0]), sig(n2), sig(n3)}}
	f.mustApply(three, f.nodes[0]) // one node proposes; three nodes' signals are the evidence
	if a, _ := f.reg.Agent("victim"); a.Status != StatusRevoked {
		t.Fatal("not revoked")
	}
	wantErr(t, f.apply(&SetRevokeQuorum{Quorum: 0}, f.ops...), ErrInvalid)
}
