package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/identity/policy"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/adminv1/adminv1connect"
)

// service implements the generated handler interface; authorisation ran before any method.
type service struct{ s *Server }

var _ adminv1connect.AdminServiceHandler = (*service)(nil)

// read runs fn on the local replica, or after a consistent read barrier when asked.
func (v *service) read(ctx context.Context, consistent bool, fn func(*identity.Registry)) error {
	if !consistent {
		v.s.b.Read(fn)
		return nil
	}
	if err := v.s.b.ConsistentRead(ctx, fn); err != nil {
		return toConnect(err)
	}
	return nil
}

// Caps on read filters (every string from the network is bounded before use).
const (
	maxSelectorLen  = 4 << 10
	maxPrincipalLen = 128
)

func (v *service) Status(ctx context.Context, req *connect.Request[adminv1.StatusRequest]) (*connect.Response[adminv1.StatusResponse], error) {
	b := v.s.b
	self := b.ID()
	out := &adminv1.StatusResponse{
		NodeId: self.String(), RaftState: b.State().String(), LeaderId: b.Leader().String(),
		IsLeader: b.IsLeader(),
	}
	if lc := b.LastContact(); lc == time.Duration(math.MaxInt64) {
		out.LastContactMs = -1
	} else {
		out.LastContactMs = lc.Milliseconds()
	}
	err := v.read(ctx, req.Msg.Consistent, func(r *identity.Registry) {
		out.AppliedIndex = b.AppliedIndex()
		if n, ok := r.Node(self); ok {
			out.NodeName = n.Name
		}
		if !r.ClusterID().IsZero() {
			out.ClusterId = r.ClusterID().String()
		}
		out.TrustDomain = r.TrustDomain()
		if req.Msg.IncludeHash {
			h := r.Hash()
			out.RegistryHash = hex.EncodeToString(h[:])
		}
		out.AuditSeq = uint64(r.AuditLen())
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

func (v *service) ListMembers(ctx context.Context, req *connect.Request[adminv1.ListMembersRequest]) (*connect.Response[adminv1.ListMembersResponse], error) {
	var nodes []identity.Node
	if err := v.read(ctx, req.Msg.Consistent, func(r *identity.Registry) { nodes = r.Nodes() }); err != nil {
		return nil, err
	}
	members, err := v.s.b.Members()
	if err != nil {
		return nil, toConnect(err)
	}
	leader, self, now := v.s.b.Leader(), v.s.b.ID().Peer(), v.s.cfg.Now()
	var states map[identity.ID]string
	if v.s.cfg.Gossip != nil {
		states = v.s.cfg.Gossip.MemberStates()
	}
	out := &adminv1.ListMembersResponse{}
	for _, n := range nodes {
		m := &adminv1.Member{Name: n.Name, Id: n.ID.String(), Site: n.Site, Voter: n.Voter,
			Addrs: n.Addrs, Leader: leader != "" && n.ID.Peer() == leader, LastContactMs: -1,
			GossipState: gossipState(states, v.s.cfg.Gossip == nil, n.ID)}
		for _, rm := range members {
			if rm.ID == n.ID.Peer() {
				m.InRaft, m.Suffrage = true, strings.ToLower(rm.Suffrage.String())
				if !rm.LastHeard.IsZero() {
					m.LastContactMs = max(now.Sub(rm.LastHeard).Milliseconds(), 0)
				}
			}
		}
		if n.ID.Peer() == self {
			m.LastContactMs = 0
		}
		out.Members = append(out.Members, m)
	}
	return connect.NewResponse(out), nil
}

// parseSelector parses "k=v,k2=v2" into pairs; every key and value is checked like a label.
func parseSelector(sel string) (map[string]string, *connect.Error) {
	if len(sel) > maxSelectorLen {
		return nil, invalidArg(identity.ErrInvalid, "selector", "%d bytes, max %d", len(sel), maxSelectorLen)
	}
	out := map[string]string{}
	if sel == "" {
		return out, nil
	}
	for _, part := range strings.Split(sel, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" {
			return nil, invalidArg(identity.ErrInvalid, "selector", "%q is not key=value", part)
		}
		out[k] = val
	}
	return out, nil
}

func parseStatus(s string) (identity.Status, *connect.Error) {
	for _, st := range []identity.Status{identity.StatusActive, identity.StatusQuarantined, identity.StatusRevoked, identity.StatusExpired} {
		if s == st.String() {
			return st, nil
		}
	}
	if s == "" {
		return 0, nil
	}
	return 0, invalidArg(identity.ErrInvalid, "status", "%.64q is not one of active, quarantined, revoked, expired", s)
}

func (v *service) ListAgents(ctx context.Context, req *connect.Request[adminv1.ListAgentsRequest]) (*connect.Response[adminv1.ListAgentsResponse], error) {
	sel, cerr := parseSelector(req.Msg.Selector)
	if cerr != nil {
		return nil, cerr
	}
	want, cerr := parseStatus(req.Msg.Status)
	if cerr != nil {
		return nil, cerr
	}
	if len(req.Msg.AfterName) > identity.MaxNameLen {
		return nil, invalidArg(identity.ErrInvalid, "after_name", "%d bytes, max %d", len(req.Msg.AfterName), identity.MaxNameLen)
	}
	limit := v.s.cfg.ListDefaultLimit
	if req.Msg.Limit > 0 {
		limit = int(min(req.Msg.Limit, uint32(v.s.cfg.ListMaxLimit)))
	}
	now := v.s.cfg.Now()
	out := &adminv1.ListAgentsResponse{}
	err := v.read(ctx, req.Msg.Consistent, func(r *identity.Registry) {
		for _, a := range r.Agents() {
			if a.Name <= req.Msg.AfterName {
				continue
			}
			if want != 0 && a.StatusAt(now) != want {
				continue
			}
			if !matches(a.Labels, sel) {
				continue
			}
			if len(out.Agents) == limit {
				out.NextAfterName = out.Agents[limit-1].Name
				return
			}
			out.Agents = append(out.Agents, agentPB(a, now))
		}
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

func matches(labels, sel map[string]string) bool {
	for k, want := range sel {
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

func agentPB(a identity.Agent, now time.Time) *adminv1.Agent {
	return &adminv1.Agent{
		Name: a.Name, Id: a.ID.String(), SpiffeId: a.SPIFFE.String(), Labels: a.Labels,
		Capabilities: a.Capabilities, Status: a.StatusAt(now).String(),
		ExpiresAt: timestamppb.New(a.ExpiresAt), RegisteredAt: timestamppb.New(a.RegisteredAt),
		Reason: a.Reason,
	}
}

func (v *service) GetAgent(ctx context.Context, req *connect.Request[adminv1.GetAgentRequest]) (*connect.Response[adminv1.GetAgentResponse], error) {
	name, idStr := req.Msg.Name, req.Msg.Id
	var id identity.ID
	switch {
	case (name == "") == (idStr == ""):
		return nil, invalidArg(identity.ErrInvalid, "name, id", "set exactly one")
	case name != "":
		if err := identity.ValidateName(name); err != nil {
			return nil, invalidArg(identity.ErrInvalid, "name", "%v", err)
		}
	default:
		var err error
		if len(idStr) > maxPrincipalLen {
			return nil, invalidArg(identity.ErrInvalid, "id", "%d bytes, max %d", len(idStr), maxPrincipalLen)
		}
		if id, err = identity.ParseID(idStr); err != nil {
			return nil, invalidArg(identity.ErrInvalid, "id", "%v", err)
		}
	}
	var a identity.Agent
	var ok bool
	err := v.read(ctx, req.Msg.Consistent, func(r *identity.Registry) {
		if name != "" {
			a, ok = r.Agent(name)
		} else {
			a, ok = r.AgentByID(id)
		}
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, toConnect(errf(identity.ErrNotFound, "agent %s%s", name, idStr))
	}
	return connect.NewResponse(&adminv1.GetAgentResponse{Agent: agentPB(a, v.s.cfg.Now())}), nil
}

func (v *service) ListOperators(ctx context.Context, req *connect.Request[adminv1.ListOperatorsRequest]) (*connect.Response[adminv1.ListOperatorsResponse], error) {
	out := &adminv1.ListOperatorsResponse{}
	err := v.read(ctx, req.Msg.Consistent, func(r *identity.Registry) {
		for _, o := range r.Operators() {
			out.Operators = append(out.Operators, &adminv1.Operator{Name: o.Name, Id: o.ID.String()})
		}
		out.Threshold = uint32(r.Threshold())
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

func (v *service) Audit(ctx context.Context, req *connect.Request[adminv1.AuditRequest]) (*connect.Response[adminv1.AuditResponse], error) {
	m := req.Msg
	if len(m.Principal) > maxPrincipalLen {
		return nil, invalidArg(identity.ErrInvalid, "principal", "%d bytes, max %d", len(m.Principal), maxPrincipalLen)
	}
	q := identity.AuditQuery{Principal: m.Principal, AfterSeq: m.AfterSeq, BeforeSeq: m.BeforeSeq, Newest: m.Newest,
		Limit: v.s.cfg.AuditDefaultLimit}
	if m.Limit > 0 {
		q.Limit = int(min(m.Limit, uint32(v.s.cfg.AuditMaxLimit)))
	}
	for _, f := range []struct {
		name string
		ts   *timestamppb.Timestamp
		dst  *time.Time
	}{{"from", m.From, &q.From}, {"to", m.To, &q.To}} {
		if f.ts == nil {
			continue
		}
		if err := f.ts.CheckValid(); err != nil {
			return nil, invalidArg(identity.ErrInvalid, f.name, "%v", err)
		}
		*f.dst = f.ts.AsTime()
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return nil, invalidArg(identity.ErrInvalid, "from, to", "from %s is not before to %s", q.From, q.To)
	}
	out := &adminv1.AuditResponse{}
	err := v.read(ctx, m.Consistent, func(r *identity.Registry) {
		out.Matched = uint64(r.AuditCount(identity.AuditQuery{Principal: q.Principal, From: q.From, To: q.To}))
		for _, e := range r.Audit(q) {
			pe := &adminv1.AuditEntry{Seq: e.Seq, Time: timestamppb.New(e.Time), Kind: e.Kind.String(),
				Subjects: e.Subjects, Detail: e.Detail, CommandDigest: e.CommandDigest[:]}
			for _, s := range e.Signers {
				pe.Signers = append(pe.Signers, s.String())
			}
			out.Entries = append(out.Entries, pe)
		}
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

func (v *service) GetPolicy(ctx context.Context, req *connect.Request[adminv1.GetPolicyRequest]) (*connect.Response[adminv1.GetPolicyResponse], error) {
	out := &adminv1.GetPolicyResponse{}
	err := v.read(ctx, req.Msg.Consistent, func(r *identity.Registry) {
		out.Version, out.Document = r.Policy()
		out.AutomatedResponse, out.RevokeQuorum = r.AutomatedResponse(), uint32(r.RevokeQuorum())
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// auditScan bounds how far back write() looks for the command's audit entry.
const auditScan = 64

// auditWait bounds how long write() waits, after a forwarded proposal was applied by the leader,
// for the local replica to apply it too (normally one heartbeat or commit round).
const auditWait = 5 * time.Second

// write checks that the signed command decodes and is of the method's kind, proposes it, and
// reports where it landed. Signatures and authority are checked by Propose and by the FSM on
// every replica; nothing is applied unless all checks pass.
func (v *service) write(ctx context.Context, method string, kind identity.Kind, req *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	raw := req.Msg.Command
	if len(raw) == 0 {
		return nil, invalidArg(identity.ErrMalformed, "command", "empty: %s takes an encoded, signed %s command", method, kind)
	}
	if len(raw) > identity.MaxCommandSize {
		return nil, invalidArg(identity.ErrTooLarge, "command", "%d bytes, max %d", len(raw), identity.MaxCommandSize)
	}
	cmd, err := identity.DecodeCommand(raw)
	if err != nil {
		return nil, toConnect(errf(err, "command: does not decode"))
	}
	if cmd.Kind != kind {
		return nil, invalidArg(identity.ErrInvalid, "command", "kind is %s, but %s takes %s", cmd.Kind, method, kind)
	}
	res, err := v.s.b.Propose(ctx, cmd)
	if err != nil {
		return nil, toConnect(err)
	}
	out := &adminv1.WriteResponse{AppliedIndex: res.Index, Kind: kind.String()}
	digest := sha256.Sum256(cmd.Encode())
	// On a follower the proposal was forwarded: the leader has applied it, this replica may not
	// have yet, and its audit entry is found only once it has. Wait for it, briefly: the write
	// is done either way, and without the entry audit_seq stays 0 (unknown), never a wrong seq.
	wctx, cancel := context.WithTimeout(ctx, auditWait)
	err = v.s.b.WaitApplied(wctx, res.Index)
	cancel()
	if err != nil {
		v.s.cfg.Logger.Debug("write applied, audit seq unknown here", "index", res.Index, "err", err)
		return connect.NewResponse(out), nil
	}
	v.s.b.Read(func(r *identity.Registry) {
		n := uint64(r.AuditLen())
		after := uint64(0)
		if n > auditScan {
			after = n - auditScan
		}
		for _, e := range r.Audit(identity.AuditQuery{AfterSeq: after}) {
			if e.CommandDigest == digest {
				out.AuditSeq = e.Seq
			}
		}
	})
	return connect.NewResponse(out), nil
}

func (v *service) RegisterAgent(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "RegisterAgent", identity.KindRegisterAgent, r)
}
func (v *service) RevokeAgent(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "RevokeAgent", identity.KindRevokeAgent, r)
}
func (v *service) QuarantineAgent(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "QuarantineAgent", identity.KindQuarantineAgent, r)
}
func (v *service) ReleaseAgent(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "ReleaseAgent", identity.KindReleaseAgent, r)
}
func (v *service) RenewAgent(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "RenewAgent", identity.KindRenewAgent, r)
}
func (v *service) RotateAgentKey(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "RotateAgentKey", identity.KindRotateAgentKey, r)
}
func (v *service) ReinstateAgent(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "ReinstateAgent", identity.KindReinstateAgent, r)
}
func (v *service) AddOperator(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "AddOperator", identity.KindAddOperator, r)
}
func (v *service) RemoveOperator(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "RemoveOperator", identity.KindRemoveOperator, r)
}
func (v *service) SetThreshold(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "SetThreshold", identity.KindSetThreshold, r)
}
func (v *service) AdmitNode(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "AdmitNode", identity.KindAdmitNode, r)
}
func (v *service) RemoveNode(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "RemoveNode", identity.KindRemoveNode, r)
}
func (v *service) SetAutomatedResponse(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "SetAutomatedResponse", identity.KindSetAutomatedResponse, r)
}
func (v *service) SetRevokeQuorum(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	return v.write(ctx, "SetRevokeQuorum", identity.KindSetRevokeQuorum, r)
}
func (v *service) ApplyPolicy(ctx context.Context, r *connect.Request[adminv1.SignedCommand]) (*connect.Response[adminv1.WriteResponse], error) {
	resp, err := v.write(ctx, "ApplyPolicy", identity.KindSetPolicy, r)
	var ce *connect.Error
	if err == nil || !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
		return resp, err
	}
	// The registry refused the document: add one ErrorDetail per problem (line, key, message),
	// so a client can show each without parsing the message.
	cmd, derr := identity.DecodeCommand(r.Msg.Command)
	if derr != nil {
		return nil, err
	}
	p, derr := cmd.DecodePayload()
	sp, ok := p.(*identity.SetPolicy)
	if derr != nil || !ok {
		return nil, err
	}
	var fes policy.Errors
	if _, perr := policy.Parse(sp.Document); !errors.As(perr, &fes) {
		return nil, err
	}
	for _, fe := range fes {
		if d, derr := connect.NewErrorDetail(&adminv1.ErrorDetail{Code: "policy", Reason: fe.Error()}); derr == nil {
			ce.AddDetail(d)
		}
	}
	return nil, ce
}
