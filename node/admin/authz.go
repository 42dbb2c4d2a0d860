package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/adminv1/adminv1connect"
)

// Role is what the caller of an admin method is, decided per request from the local registry
// (so a revocation takes effect on the next call, even on a kept-alive connection).
type Role uint8

const (
	// RoleUnknown: a key the registry has never held, or no identity at all. Always denied.
	RoleUnknown Role = iota
	// RoleRevoked: a key the registry holds but not as active: a revoked, quarantined or expired
	// agent, a rotated-out key, a removed operator or node. Always denied.
	RoleRevoked
	// RoleAgent: an active agent. Always denied: agents have no admin methods.
	RoleAgent
	// RoleNode: an admitted node (read-only view of the node and the membership).
	RoleNode
	// RoleOperator: a current operator key.
	RoleOperator
	// RoleLocal: a caller on the node's Unix socket, i.e. the host's root or the socket owner.
	RoleLocal
)

func (r Role) String() string {
	switch r {
	case RoleRevoked:
		return "revoked"
	case RoleAgent:
		return "agent"
	case RoleNode:
		return "node"
	case RoleOperator:
		return "operator"
	case RoleLocal:
		return "local"
	}
	return "unknown"
}

var (
	readers     = []Role{RoleOperator, RoleLocal}
	nodeReaders = []Role{RoleOperator, RoleLocal, RoleNode}
	writers     = []Role{RoleOperator, RoleLocal}
)

// MethodRoles is THE authorisation table: procedure → the roles that may call it. A procedure
// that is not listed is denied to everyone (deny by default). Writes are open to operators and
// the local socket only; the command's own operator signatures are still checked by every
// replica, so this table only decides who may submit. Documented in docs/admin-api.md.
var MethodRoles = map[string][]Role{
	adminv1connect.AdminServiceStatusProcedure:        nodeReaders,
	adminv1connect.AdminServiceListMembersProcedure:   nodeReaders,
	adminv1connect.AdminServiceListAgentsProcedure:    readers,
	adminv1connect.AdminServiceGetAgentProcedure:      readers,
	adminv1connect.AdminServiceListOperatorsProcedure: readers,
	adminv1connect.AdminServiceAuditProcedure:         readers,
	adminv1connect.AdminServiceGetPolicyProcedure:     readers,

	adminv1connect.AdminServiceRegisterAgentProcedure:        writers,
	adminv1connect.AdminServiceRevokeAgentProcedure:          writers,
	adminv1connect.AdminServiceQuarantineAgentProcedure:      writers,
	adminv1connect.AdminServiceReleaseAgentProcedure:         writers,
	adminv1connect.AdminServiceRenewAgentProcedure:           writers,
	adminv1connect.AdminServiceRotateAgentKeyProcedure:       writers,
	adminv1connect.AdminServiceReinstateAgentProcedure:       writers,
	adminv1connect.AdminServiceAddOperatorProcedure:          writers,
	adminv1connect.AdminServiceRemoveOperatorProcedure:       writers,
	adminv1connect.AdminServiceSetThresholdProcedure:         writers,
	adminv1connect.AdminServiceAdmitNodeProcedure:            writers,
	adminv1connect.AdminServiceRemoveNodeProcedure:           writers,
	adminv1connect.AdminServiceApplyPolicyProcedure:          writers,
	adminv1connect.AdminServiceSetAutomatedResponseProcedure: writers,
	adminv1connect.AdminServiceSetRevokeQuorumProcedure:      writers,

	adminv1connect.AdminServiceAgentActivityProcedure: readers,

	adminv1connect.AdminServiceListAlertsProcedure:    readers,
	adminv1connect.AdminServiceAckAlertProcedure:      writers,
	adminv1connect.AdminServiceResolveAlertProcedure:  writers,
	adminv1connect.AdminServiceListDecisionsProcedure: readers,
	// The gossip keyring: operators only (a node identity may not rotate it).
	adminv1connect.AdminServiceGossipKeysProcedure:      readers,
	adminv1connect.AdminServiceChangeGossipKeyProcedure: writers,
	// Lifting a response decision changes enforcement on the node: operators only.
	adminv1connect.AdminServiceLiftDecisionProcedure: writers,
}

// Allowed reports whether role may call procedure, from MethodRoles.
func Allowed(procedure string, role Role) bool {
	return slices.Contains(MethodRoles[procedure], role)
}

// roleOf classifies a remote key against the registry at now.
func roleOf(r *identity.Registry, id identity.ID, now time.Time) Role {
	role, st, ok := r.Principal(id, now)
	switch {
	case !ok && st == identity.StatusRevoked:
		return RoleRevoked
	case !ok:
		return RoleUnknown
	case st != identity.StatusActive:
		return RoleRevoked
	}
	switch role {
	case identity.RoleOperator:
		return RoleOperator
	case identity.RoleNode:
		return RoleNode
	case identity.RoleAgent:
		return RoleAgent
	}
	return RoleUnknown
}

// Caller is the authenticated caller of one request.
type Caller struct {
	// ID is the peer ID proved by the client certificate; zero for the Unix socket.
	ID identity.ID
	// Local is true for a Unix-socket caller.
	Local bool
}

type callerKey struct{}

// CallerFrom returns the caller of the request that ctx belongs to.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

func withCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// NotReadyCode is the stable error code (ErrorCodeHeader, ErrorDetail) of a call refused
// because the node is not ready (Config.Ready); a removed node answers "consensus.removed".
const NotReadyCode = "node.not_ready"

// notReadyError is the answer to a call the node cannot serve yet: "node not ready: " and the
// reason, with code (Unavailable: retry later; FailedPrecondition: removed, retrying is useless).
func notReadyError(code connect.Code, reason error) *connect.Error {
	ec := NotReadyCode
	if errors.Is(reason, consensus.ErrRemoved) {
		ec = "consensus.removed"
	}
	out := connect.NewError(code, fmt.Errorf("node not ready: %w", reason))
	out.Meta().Set(ErrorCodeHeader, ec)
	if d, err := connect.NewErrorDetail(&adminv1.ErrorDetail{Code: ec, Reason: "node not ready: " + reason.Error()}); err == nil {
		out.AddDetail(d)
	}
	return out
}
