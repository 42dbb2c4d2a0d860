package admin

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/alerts"
)

var (
	errNoAlerts    = errors.New("admin: this server has no alert store")
	errNoDecisions = errors.New("admin: this server has no response decisions")
)

// Limits of ListAlerts.
const (
	alertsDefaultLimit = 100
	alertsMaxLimit     = 10_000
	maxAlertIDLen      = 64
)

func alertPB(a alerts.Alert) *adminv1.Alert {
	ts := func(t interface{ IsZero() bool }) bool { return !t.IsZero() }
	out := &adminv1.Alert{Id: a.ID, Agent: a.Agent, Model: a.Model, Score: a.Score, Evidence: a.Evidence,
		Time: timestamppb.New(a.Time), Action: a.Action, Status: string(a.Status), FalsePositive: a.FalsePositive,
		Shared: a.Shared, AckedBy: a.AckedBy, ResolvedBy: a.ResolvedBy}
	if ts(a.AckedAt) {
		out.AckedAt = timestamppb.New(a.AckedAt)
	}
	if ts(a.ResolvedAt) {
		out.ResolvedAt = timestamppb.New(a.ResolvedAt)
	}
	return out
}

// who names the caller in an alert's record: its peer ID, or "local".
func who(ctx context.Context) string {
	c, ok := CallerFrom(ctx)
	switch {
	case !ok:
		return "unknown"
	case c.Local:
		return "local"
	}
	return c.ID.String()
}

func alertErr(err error) error {
	switch {
	case errors.Is(err, alerts.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, alerts.ErrTransition):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

func (v *service) ListAlerts(_ context.Context, req *connect.Request[adminv1.ListAlertsRequest]) (*connect.Response[adminv1.ListAlertsResponse], error) {
	m := req.Msg
	if len(m.Agent) > maxPrincipalLen {
		return nil, invalidArg(identity.ErrInvalid, "agent", "%d bytes, max %d", len(m.Agent), maxPrincipalLen)
	}
	q := alerts.Query{Agent: m.Agent, Limit: alertsDefaultLimit}
	if m.Status != "" {
		st, err := alerts.ParseStatus(m.Status)
		if err != nil {
			return nil, invalidArg(identity.ErrInvalid, "status", "%q: want open, acked or resolved", m.Status)
		}
		q.Status = st
	}
	if m.Limit > 0 {
		q.Limit = int(min(m.Limit, alertsMaxLimit))
	}
	if m.Since != nil {
		if err := m.Since.CheckValid(); err != nil {
			return nil, invalidArg(identity.ErrInvalid, "since", "%v", err)
		}
		q.Since = m.Since.AsTime()
	}
	if v.s.cfg.Alerts == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errNoAlerts)
	}
	list, err := v.s.cfg.Alerts.ListAlerts(q)
	if err != nil {
		return nil, alertErr(err)
	}
	out := &adminv1.ListAlertsResponse{}
	if !v.s.cfg.Key.IsZero() {
		out.Node = v.s.cfg.Key.ID().String()
	}
	for _, a := range list {
		out.Alerts = append(out.Alerts, alertPB(a))
	}
	return connect.NewResponse(out), nil
}

func checkAlertID(id string) error {
	if id == "" || len(id) > maxAlertIDLen {
		return invalidArg(identity.ErrInvalid, "id", "required, at most %d bytes", maxAlertIDLen)
	}
	return nil
}

func (v *service) AckAlert(ctx context.Context, req *connect.Request[adminv1.AckAlertRequest]) (*connect.Response[adminv1.AlertResponse], error) {
	if err := checkAlertID(req.Msg.Id); err != nil {
		return nil, err
	}
	if v.s.cfg.Alerts == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errNoAlerts)
	}
	a, err := v.s.cfg.Alerts.AckAlert(req.Msg.Id, who(ctx))
	if err != nil {
		return nil, alertErr(err)
	}
	return connect.NewResponse(&adminv1.AlertResponse{Alert: alertPB(a)}), nil
}

func (v *service) ResolveAlert(ctx context.Context, req *connect.Request[adminv1.ResolveAlertRequest]) (*connect.Response[adminv1.AlertResponse], error) {
	if err := checkAlertID(req.Msg.Id); err != nil {
		return nil, err
	}
	if v.s.cfg.Alerts == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errNoAlerts)
	}
	a, err := v.s.cfg.Alerts.ResolveAlert(req.Msg.Id, who(ctx), req.Msg.FalsePositive)
	if err != nil {
		return nil, alertErr(err)
	}
	return connect.NewResponse(&adminv1.AlertResponse{Alert: alertPB(a)}), nil
}

func (v *service) ListDecisions(_ context.Context, _ *connect.Request[adminv1.ListDecisionsRequest]) (*connect.Response[adminv1.ListDecisionsResponse], error) {
	if v.s.cfg.Decisions == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errNoDecisions)
	}
	out := &adminv1.ListDecisionsResponse{}
	if !v.s.cfg.Key.IsZero() {
		out.Node = v.s.cfg.Key.ID().String()
	}
	for _, d := range v.s.cfg.Decisions() {
		pb := &adminv1.Decision{Agent: d.Agent.Name, AgentId: d.Agent.Key.ID().String(), Action: d.Action.String(),
			Reporters: uint32(d.Reporters), Signals: uint32(d.Signals), MaxScore: d.MaxScore, Escalated: d.Escalated, DryRun: d.DryRun}
		if !d.Until.IsZero() {
			pb.Until = timestamppb.New(d.Until)
		}
		for _, s := range d.Evidence {
			pb.EvidenceReporters = append(pb.EvidenceReporters, s.Reporter.ID().String())
		}
		out.Decisions = append(out.Decisions, pb)
	}
	return connect.NewResponse(out), nil
}
