package admin_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// otherKind returns a valid payload of a kind that method does not take.
func otherKind(method string) identity.Payload {
	if method == "ReleaseAgent" {
		return &identity.RevokeAgent{Name: "good", Reason: "wrong kind"}
	}
	return &identity.ReleaseAgent{Name: "good"}
}

// TestMalformedWrites sends bad input to every write method: each is refused with a code and a
// message that name the problem, and the registry Hash does not change.
func TestMalformedWrites(t *testing.T) {
	e := newEnv(t)
	op := e.tlsClient(e.ops[0])
	for _, m := range writeOrder {
		valid := e.signed(e.payloadFor(m, "mal"), e.ops[0])
		unsigned := e.signed(e.payloadFor(m, "mal"))
		forged := valid.Clone()
		forged.Signatures[0].Sig[0] ^= 0xff
		stranger := e.signed(e.payloadFor(m, "mal"), mustKey(t))
		cases := []struct {
			name     string
			cmd      []byte
			code     connect.Code
			vcode    string // the Vigil error code; "" when the transport refuses before the handler
			contains string
		}{
			{"empty", nil, connect.CodeInvalidArgument, "malformed", "command: empty"},
			{"garbage", []byte("\x00\x01garbage bytes"), connect.CodeInvalidArgument, "malformed", "command: does not decode"},
			{"trailing bytes", append(valid.Encode(), 0), connect.CodeInvalidArgument, "malformed", "command: does not decode"},
			{"wrong kind", e.signed(otherKind(m), e.ops[0]).Encode(), connect.CodeInvalidArgument, "invalid", "but " + m + " takes"},
			{"unsigned", unsigned.Encode(), connect.CodeInvalidArgument, "unsigned", "no signature"},
			{"forged signature", forged.Encode(), connect.CodePermissionDenied, "bad_signature", "does not verify"},
			{"signed by a stranger", stranger.Encode(), connect.CodePermissionDenied, "unauthorized", ""},
			{"over the command cap", bytes.Repeat([]byte{1}, identity.MaxCommandSize+1), connect.CodeInvalidArgument, "too_large", "command: 65537 bytes"},
			{"over the request cap", bytes.Repeat([]byte{1}, 1<<20+1), connect.CodeResourceExhausted, "", ""},
		}
		for _, tc := range cases {
			before := e.hash()
			err := call(ctxT(t), op, m, tc.cmd)
			if got := connect.CodeOf(err); got != tc.code {
				t.Errorf("%s/%s: code %v, want %v (%v)", m, tc.name, got, tc.code, err)
			}
			if got := client.Code(err); got != tc.vcode {
				t.Errorf("%s/%s: vigil code %q, want %q (%v)", m, tc.name, got, tc.vcode, err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("%s/%s: message %q does not say %q", m, tc.name, err, tc.contains)
			}
			if after := e.hash(); after != before {
				t.Errorf("%s/%s: registry changed", m, tc.name)
			}
		}
	}
}

// TestRejectionCodes: registry rejections map to connect codes with the identity code attached.
func TestRejectionCodes(t *testing.T) {
	e := newEnv(t)
	op := e.tlsClient(e.ops[0])
	exp := time.Now().Add(time.Hour)
	cases := []struct {
		name   string
		method string
		cmd    *identity.Command
		code   connect.Code
		err    error
	}{
		{"exists", "RegisterAgent", e.signed(&identity.RegisterAgent{Name: "good", Key: mustKey(t).Public(), ExpiresAt: exp}, e.ops[0]), connect.CodeAlreadyExists, identity.ErrExists},
		{"not found", "RevokeAgent", e.signed(&identity.RevokeAgent{Name: "nobody"}, e.ops[0]), connect.CodeNotFound, identity.ErrNotFound},
		{"version conflict", "ApplyPolicy", e.signed(&identity.SetPolicy{Version: 7}, e.ops[0]), connect.CodeFailedPrecondition, identity.ErrVersionConflict},
		{"stale", "RevokeAgent", func() *identity.Command {
			c, err := identity.NewCommand(e.cid, &identity.RevokeAgent{Name: "good"}, time.Now().Add(-time.Hour), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			c.Sign(e.ops[0])
			return c
		}(), connect.CodeFailedPrecondition, identity.ErrStale},
		{"invalid field", "SetThreshold", e.signed(&identity.SetThreshold{Threshold: 9}, e.ops[0]), connect.CodeInvalidArgument, identity.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.hash()
			err := call(ctxT(t), op, tc.method, tc.cmd.Encode())
			if connect.CodeOf(err) != tc.code {
				t.Fatalf("code %v, want %v (%v)", connect.CodeOf(err), tc.code, err)
			}
			if got := client.IdentityError(err); !errors.Is(got, tc.err) {
				t.Fatalf("identity error %v, want %v", got, tc.err)
			}
			// The message says why once: no part of it repeated by the wrapping.
			var ce *connect.Error
			if !errors.As(err, &ce) || strings.Count(ce.Message(), tc.err.Error()) != 1 || strings.Count(ce.Message(), "identity: ") != 1 {
				t.Fatalf("message %q: want %q and the package prefix once", ce.Message(), tc.err)
			}
			if e.hash() != before {
				t.Fatal("registry changed")
			}
		})
	}
	// A replay of an applied command is refused.
	c := e.signed(&identity.QuarantineAgent{Name: "good", Reason: "x"}, e.ops[0])
	if err := call(ctxT(t), op, "QuarantineAgent", c.Encode()); err != nil {
		t.Fatal(err)
	}
	err := call(ctxT(t), op, "QuarantineAgent", c.Encode())
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !errors.Is(client.IdentityError(err), identity.ErrReplay) {
		t.Fatalf("replay: %v (%q)", err, client.Code(err))
	}
}

// TestHappyPath: register → get → revoke → the audit shows both, over mTLS as an operator.
func TestHappyPath(t *testing.T) {
	e := newEnv(t)
	op := e.tlsClient(e.ops[0])
	ctx := ctxT(t)
	agentKey := mustKey(t)
	reg := e.signed(&identity.RegisterAgent{Name: "worker", Key: agentKey.Public(), Labels: map[string]string{"site": "b", "role": "x"},
		Capabilities: []string{"send"}, ExpiresAt: time.Now().Add(time.Hour)}, e.ops[0])
	wr, err := op.RegisterAgent(ctx, connect.NewRequest(&adminv1.SignedCommand{Command: reg.Encode()}))
	if err != nil {
		t.Fatal(err)
	}
	if wr.Msg.AppliedIndex == 0 || wr.Msg.AuditSeq == 0 || wr.Msg.Kind != "register-agent" {
		t.Fatalf("write response %v", wr.Msg)
	}
	for _, req := range []*adminv1.GetAgentRequest{{Name: "worker"}, {Id: agentKey.ID().String(), Consistent: true}} {
		got, err := op.GetAgent(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		a := got.Msg.Agent
		if a.Name != "worker" || a.Id != agentKey.ID().String() || a.Status != "active" || a.Labels["site"] != "b" ||
			a.SpiffeId != "spiffe://test.vigil/agent/worker" {
			t.Fatalf("agent %v", a)
		}
	}
	list, err := op.ListAgents(ctx, connect.NewRequest(&adminv1.ListAgentsRequest{Selector: "site=b,role=x", Status: "active"}))
	if err != nil || len(list.Msg.Agents) != 1 || list.Msg.Agents[0].Name != "worker" {
		t.Fatalf("list by selector: %v %v", list, err)
	}
	// Paging: one agent per page walks good, gone, worker in name order.
	var names []string
	for after := ""; ; {
		page, err := op.ListAgents(ctx, connect.NewRequest(&adminv1.ListAgentsRequest{Limit: 1, AfterName: after}))
		if err != nil || len(page.Msg.Agents) != 1 {
			t.Fatalf("page after %q: %v %v", after, page, err)
		}
		names = append(names, page.Msg.Agents[0].Name)
		if after = page.Msg.NextAfterName; after == "" {
			break
		}
	}
	if strings.Join(names, ",") != "gone,good,worker" {
		t.Fatalf("paged names %v", names)
	}
	rev := e.signed(&identity.RevokeAgent{Name: "worker", Reason: "compromised"}, e.ops[0])
	rr, err := op.RevokeAgent(ctx, connect.NewRequest(&adminv1.SignedCommand{Command: rev.Encode()}))
	if err != nil {
		t.Fatal(err)
	}
	if rr.Msg.AuditSeq != wr.Msg.AuditSeq+1 {
		t.Fatalf("revoke audit seq %d after register %d", rr.Msg.AuditSeq, wr.Msg.AuditSeq)
	}
	got, err := op.GetAgent(ctx, connect.NewRequest(&adminv1.GetAgentRequest{Name: "worker"}))
	if err != nil || got.Msg.Agent.Status != "revoked" || got.Msg.Agent.Reason != "compromised" {
		t.Fatalf("after revoke: %v %v", got, err)
	}
	au, err := op.Audit(ctx, connect.NewRequest(&adminv1.AuditRequest{Principal: "worker", Consistent: true}))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, en := range au.Msg.Entries {
		kinds = append(kinds, en.Kind)
		if len(en.Signers) != 1 || en.Signers[0] != e.ops[0].ID().String() {
			t.Fatalf("audit signers %v", en.Signers)
		}
	}
	if strings.Join(kinds, ",") != "register-agent,revoke-agent" {
		t.Fatalf("audit kinds %v", kinds)
	}
	// Paging and limits.
	page, err := op.Audit(ctx, connect.NewRequest(&adminv1.AuditRequest{Limit: 1, AfterSeq: wr.Msg.AuditSeq}))
	if err != nil || len(page.Msg.Entries) != 1 || page.Msg.Entries[0].Seq != rr.Msg.AuditSeq {
		t.Fatalf("audit page: %v %v", page, err)
	}
	// The newest entries, paging back, with the number that matched.
	newest, err := op.Audit(ctx, connect.NewRequest(&adminv1.AuditRequest{Limit: 2, Newest: true}))
	if err != nil || len(newest.Msg.Entries) != 2 || newest.Msg.Entries[1].Seq != rr.Msg.AuditSeq ||
		newest.Msg.Entries[0].Seq != rr.Msg.AuditSeq-1 || newest.Msg.Matched != rr.Msg.AuditSeq {
		t.Fatalf("audit newest: %v %v", newest, err)
	}
	back, err := op.Audit(ctx, connect.NewRequest(&adminv1.AuditRequest{Limit: 1, Newest: true, BeforeSeq: rr.Msg.AuditSeq,
		Principal: "worker"}))
	if err != nil || len(back.Msg.Entries) != 1 || back.Msg.Entries[0].Seq != wr.Msg.AuditSeq || back.Msg.Matched != 2 {
		t.Fatalf("audit newest before: %v %v", back, err)
	}
	st, err := op.Status(ctx, connect.NewRequest(&adminv1.StatusRequest{Consistent: true, IncludeHash: true}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Msg.NodeName != "n1" || !st.Msg.IsLeader || st.Msg.ClusterId != e.cid.String() || st.Msg.TrustDomain != "test.vigil" ||
		st.Msg.RegistryHash != e.hash() || st.Msg.AuditSeq != rr.Msg.AuditSeq || st.Msg.LastContactMs != 0 {
		t.Fatalf("status %v", st.Msg)
	}
	mem, err := op.ListMembers(ctx, connect.NewRequest(&adminv1.ListMembersRequest{}))
	if err != nil || len(mem.Msg.Members) != 1 || !mem.Msg.Members[0].Leader || !mem.Msg.Members[0].InRaft || mem.Msg.Members[0].Suffrage != "voter" {
		t.Fatalf("members %v %v", mem, err)
	}
	ops, err := op.ListOperators(ctx, connect.NewRequest(&adminv1.ListOperatorsRequest{}))
	if err != nil || len(ops.Msg.Operators) != 2 || ops.Msg.Threshold != 1 {
		t.Fatalf("operators %v %v", ops, err)
	}
}

// TestReadValidation: bad read filters are refused naming the field.
func TestReadValidation(t *testing.T) {
	e := newEnv(t)
	op := client.DialUnix(e.sock)
	ctx := ctxT(t)
	cases := []struct {
		name  string
		call  func() error
		field string
	}{
		{"selector", func() error {
			_, err := op.ListAgents(ctx, connect.NewRequest(&adminv1.ListAgentsRequest{Selector: "site"}))
			return err
		}, "selector"},
		{"status", func() error {
			_, err := op.ListAgents(ctx, connect.NewRequest(&adminv1.ListAgentsRequest{Status: "sleepy"}))
			return err
		}, "status"},
		{"neither name nor id", func() error {
			_, err := op.GetAgent(ctx, connect.NewRequest(&adminv1.GetAgentRequest{}))
			return err
		}, "name, id"},
		{"bad id", func() error {
			_, err := op.GetAgent(ctx, connect.NewRequest(&adminv1.GetAgentRequest{Id: "12D3KooNope"}))
			return err
		}, "id"},
		{"bad name", func() error {
			_, err := op.GetAgent(ctx, connect.NewRequest(&adminv1.GetAgentRequest{Name: "Bad Name"}))
			return err
		}, "name"},
		{"long principal", func() error {
			_, err := op.Audit(ctx, connect.NewRequest(&adminv1.AuditRequest{Principal: strings.Repeat("a", 200)}))
			return err
		}, "principal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("want InvalidArgument naming %q, got %v", tc.field, err)
			}
		})
	}
	_, err := op.GetAgent(ctx, connect.NewRequest(&adminv1.GetAgentRequest{Name: "nobody"}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("unknown agent: %v", err)
	}
}

// TestApplyPolicyFieldErrors: an invalid policy document is refused with InvalidArgument, one
// ErrorDetail per problem naming its line and key, and the policy does not change.
func TestApplyPolicyFieldErrors(t *testing.T) {
	e := newEnv(t)
	c := client.DialUnix(e.sock)
	before := e.hash()
	doc := "monitoring:\n  enabled: false\nresponse:\n  revoke_quorum: 0\n"
	err := call(ctxT(t), c, "ApplyPolicy", e.signed(&identity.SetPolicy{Version: 1, Document: []byte(doc)}, e.ops[0]).Encode())
	if connect.CodeOf(err) != connect.CodeInvalidArgument || client.Code(err) != "invalid" {
		t.Fatalf("code %v / %q: %v", connect.CodeOf(err), client.Code(err), err)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ce.Details() {
		m, derr := d.Value()
		if ed, ok := m.(*adminv1.ErrorDetail); derr == nil && ok && ed.Code == "policy" {
			got = append(got, ed.Reason)
		}
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], "line 2: monitoring.enabled:") || !strings.HasPrefix(got[1], "line 4: response.revoke_quorum:") {
		t.Fatalf("policy details = %q", got)
	}
	if e.hash() != before {
		t.Fatal("a refused policy changed the registry")
	}
}

// TestWriteThroughFollower: a write sent to a node that does not lead is forwarded to the
// leader, and the answer carries the command's real audit seq (not 0: the follower waits until
// it has applied the entry before it looks the entry up).
func TestWriteThroughFollower(t *testing.T) {
	e := newEnv(t)
	c, n2 := e.follower()
	if n2.IsLeader() {
		t.Fatal("n2 leads")
	}
	for i := range 3 {
		cmd := e.signed(&identity.RegisterAgent{Name: fmt.Sprintf("via-follower-%d", i), Key: mustKey(t).Public(),
			ExpiresAt: time.Now().Add(time.Hour)}, e.ops[0])
		resp, err := c.RegisterAgent(ctxT(t), connect.NewRequest(&adminv1.SignedCommand{Command: cmd.Encode()}))
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256(cmd.Encode())
		var want uint64
		e.node.Read(func(r *identity.Registry) {
			for _, a := range r.Audit(identity.AuditQuery{}) {
				if a.CommandDigest == digest {
					want = a.Seq
				}
			}
		})
		if want == 0 || resp.Msg.AuditSeq != want || resp.Msg.AppliedIndex == 0 {
			t.Fatalf("write %d through the follower: audit seq %d at index %d, want seq %d", i, resp.Msg.AuditSeq, resp.Msg.AppliedIndex, want)
		}
	}
}
