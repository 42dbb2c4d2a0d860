package admin

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

// errNoActivity: the server was built without a telemetry source (Config.Activity).
var errNoActivity = errors.New("admin: this server has no agent telemetry")

// Limits of AgentActivity.
const (
	activityDefaultLimit = 100
	activityMaxLimit     = 10_000
)

// AgentActivity answers from this node's telemetry (Config.Activity): the agent's newest
// records, oldest first. An agent the registry does not hold is NotFound.
func (v *service) AgentActivity(_ context.Context, req *connect.Request[adminv1.AgentActivityRequest]) (*connect.Response[adminv1.AgentActivityResponse], error) {
	m := req.Msg
	if m.Agent == "" {
		return nil, invalidArg(identity.ErrInvalid, "agent", "required (a name or peer ID)")
	}
	if len(m.Agent) > maxPrincipalLen {
		return nil, invalidArg(identity.ErrInvalid, "agent", "%d bytes, max %d", len(m.Agent), maxPrincipalLen)
	}
	q := telemetry.Query{Agent: m.Agent, Limit: activityDefaultLimit}
	if m.Limit > 0 {
		q.Limit = int(min(m.Limit, activityMaxLimit))
	}
	if m.Since != nil {
		if err := m.Since.CheckValid(); err != nil {
			return nil, invalidArg(identity.ErrInvalid, "since", "%v", err)
		}
		q.Since = m.Since.AsTime()
	}
	if v.s.cfg.Activity == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errNoActivity)
	}
	// An agent the registry never knew has no activity anywhere: say so rather than answer
	// with an empty list (a typo would look like a quiet agent). Revoked and expired agents
	// stay in the registry, so their history is still shown.
	known := false
	v.s.b.Read(func(r *identity.Registry) {
		if id, err := identity.ParseID(m.Agent); err == nil {
			_, known = r.AgentByID(id)
		} else {
			_, known = r.Agent(m.Agent)
		}
	})
	if !known {
		return nil, toConnect(errf(identity.ErrNotFound, "agent %q: no agent with that name or peer ID in the registry", m.Agent))
	}
	out := &adminv1.AgentActivityResponse{}
	if !v.s.cfg.Key.IsZero() {
		out.Node = v.s.cfg.Key.ID().String()
	}
	for _, r := range v.s.cfg.Activity(q) {
		out.Records = append(out.Records, &adminv1.ActivityRecord{Time: timestamppb.New(r.Time), Agent: r.Agent,
			AgentId: r.AgentID, Kind: r.Kind, Action: r.Action, Peer: r.Peer, Bytes: uint64(max(r.Bytes, 0)),
			LatencySeconds: r.Latency.Seconds(), Outcome: r.Outcome, Hop: r.Hop, Value: r.Value})
	}
	return connect.NewResponse(out), nil
}
