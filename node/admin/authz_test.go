package admin_test

import (
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/adminv1/adminv1connect"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// *consensus.Node is the production Backend.
var _ admin.Backend = (*consensus.Node)(nil)

// callers of the matrix, in the order each method is tried (denied ones first, so that the
// command they send is one the registry would accept right now: a denial is the table's).
var callers = []string{"agent", "revoked", "node", "nocert", "operator", "operator2", "unix"}

// expected is the authorisation matrix written out by hand, independently of MethodRoles:
// method → the callers that may call it. Everything else must be refused.
var expected = map[string]string{
	"Status":               "operator operator2 node unix",
	"ListMembers":          "operator operator2 node unix",
	"ListAgents":           "operator operator2 unix",
	"GetAgent":             "operator operator2 unix",
	"ListOperators":        "operator operator2 unix",
	"Audit":                "operator operator2 unix",
	"GetPolicy":            "operator operator2 unix",
	"RegisterAgent":        "operator operator2 unix",
	"RevokeAgent":          "operator operator2 unix",
	"QuarantineAgent":      "operator operator2 unix",
	"ReleaseAgent":         "operator operator2 unix",
	"RenewAgent":           "operator operator2 unix",
	"RotateAgentKey":       "operator operator2 unix",
	"ReinstateAgent":       "operator operator2 unix",
	"AddOperator":          "operator operator2 unix",
	"RemoveOperator":       "operator operator2 unix",
	"SetThreshold":         "operator operator2 unix",
	"AdmitNode":            "operator operator2 unix",
	"RemoveNode":           "operator operator2 unix",
	"ApplyPolicy":          "operator operator2 unix",
	"SetAutomatedResponse": "operator operator2 unix",
	"SetRevokeQuorum":      "operator operator2 unix",
	"AgentActivity":        "operator operator2 unix",
	"ListAlerts":           "operator operator2 unix",
	"AckAlert":             "operator operator2 unix",
	"ResolveAlert":         "operator operator2 unix",
	"ListDecisions":        "operator operator2 unix",
	"GossipKeys":           "operator operator2 unix",
	"ChangeGossipKey":      "operator operator2 unix",
	"LiftDecision":         "operator operator2 unix",
}

// roleOfCaller is the role each matrix caller has on the server.
var roleOfCaller = map[string]admin.Role{
	"agent": admin.RoleAgent, "revoked": admin.RoleRevoked, "node": admin.RoleNode,
	"nocert": admin.RoleUnknown, "operator": admin.RoleOperator, "operator2": admin.RoleOperator,
	"unix": admin.RoleLocal,
}

func procedure(method string) string { return "/" + adminv1connect.AdminServiceName + "/" + method }

// TestTableCoversService: every RPC of the service is in MethodRoles and in the hand-written
// table, and nothing else is; the two tables agree on every cell.
func TestTableCoversService(t *testing.T) {
	methods := adminv1.File_vigil_admin_v1_admin_proto.Services().ByName("AdminService").Methods()
	var names []string
	for i := range methods.Len() {
		names = append(names, string(methods.Get(i).Name()))
	}
	if len(names) != len(admin.MethodRoles) || len(names) != len(expected) {
		t.Fatalf("service has %d methods, MethodRoles %d, expected table %d", len(names), len(admin.MethodRoles), len(expected))
	}
	if got := append(slices.Clone(readMethods), writeOrder...); len(got) != len(names) {
		t.Fatalf("test lists %d methods, service %d", len(got), len(names))
	}
	for _, m := range names {
		if _, ok := admin.MethodRoles[procedure(m)]; !ok {
			t.Errorf("%s missing from MethodRoles", m)
		}
		for _, c := range callers {
			want := slices.Contains(strings.Fields(expected[m]), c)
			if got := admin.Allowed(procedure(m), roleOfCaller[c]); got != want {
				t.Errorf("%s × %s: MethodRoles allows=%t, hand table %t", m, c, got, want)
			}
		}
	}
	if admin.Allowed("/vigil.admin.v1.AdminService/NoSuch", admin.RoleLocal) {
		t.Error("an unlisted procedure is allowed")
	}
}

// TestAuthorizationMatrix calls every method as every caller over real mTLS and the Unix socket
// against a real one-node cluster. Allowed cells succeed (writes carry a command the registry
// accepts); every other cell is refused and leaves the registry Hash unchanged.
func TestAuthorizationMatrix(t *testing.T) {
	e := newEnv(t)
	clients := map[string]client.Client{
		"operator": e.tlsClient(e.ops[0]), "operator2": e.tlsClient(e.ops[1]),
		"node": e.tlsClient(e.nodeKey), "agent": e.tlsClient(e.agent),
		"revoked": e.tlsClient(e.revoked), "nocert": e.noCertClient(),
		"unix": client.DialUnix(e.sock),
	}
	signer := map[string]identity.PrivateKey{"operator": e.ops[0], "operator2": e.ops[1], "unix": e.ops[0]}
	for _, m := range append(slices.Clone(readMethods), writeOrder...) {
		allowed := strings.Fields(expected[m])
		isWrite := slices.Contains(writeOrder, m)
		for _, c := range callers {
			ok := slices.Contains(allowed, c)
			// A denied caller sends the command the next allowed caller will send successfully.
			subject := "w-" + c
			key := signer[c]
			if !ok {
				subject, key = "w-"+allowed[0], signer[allowed[0]]
			}
			var cmd []byte
			if isWrite {
				cmd = e.signed(e.payloadFor(m, subject), key).Encode()
			}
			before := e.hash()
			err := call(ctxT(t), clients[c], m, cmd)
			switch {
			case ok && err != nil:
				t.Errorf("%s × %s: want success, got %v", m, c, err)
			case !ok && err == nil:
				t.Errorf("%s × %s: want refusal, got success", m, c)
			case !ok:
				if c == "nocert" {
					// Refused by the TLS handshake (TestNoClientCertificate checks the alert): the
					// request never reaches a handler, so it carries no server error code.
					if code := connect.CodeOf(err); client.Code(err) != "" || (code != connect.CodeUnavailable && code != connect.CodeCanceled && code != connect.CodeUnknown) {
						t.Errorf("%s × nocert: want a transport failure, got %v", m, err)
					}
				} else if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "role "+roleOfCaller[c].String()) {
					t.Errorf("%s × %s: want PermissionDenied naming role %s, got %v", m, c, roleOfCaller[c], err)
				}
				if after := e.hash(); after != before {
					t.Errorf("%s × %s: refused call changed the registry", m, c)
				}
			}
		}
	}
}

// TestRoleFollowsRegistry: a removed operator loses access on its next call, on the same
// kept-alive connection.
func TestRoleFollowsRegistry(t *testing.T) {
	e := newEnv(t)
	c := e.tlsClient(e.ops[1])
	if err := call(ctxT(t), c, "ListAgents", nil); err != nil {
		t.Fatal(err)
	}
	e.propose(e.signed(&identity.RemoveOperator{Name: "op2"}, e.ops[0]))
	err := call(ctxT(t), c, "ListAgents", nil)
	if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "role revoked") {
		t.Fatalf("removed operator: want PermissionDenied for role revoked, got %v", err)
	}
	if !errors.Is(client.IdentityError(err), identity.ErrUnauthorized) {
		t.Fatalf("want the unauthorized code in the error detail, got %q", client.Code(err))
	}
}

// TestNoClientCertificate: a TLS client without a certificate fails the handshake with the
// certificate_required alert; one with a certificate for another key than the pinned node ID
// is refused by the client.
func TestNoClientCertificate(t *testing.T) {
	e := newEnv(t)
	conn, err := tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}}) //nolint:gosec // the point of the test
	if err == nil {
		// TLS 1.3: the client finishes first; the server's verdict arrives as an alert.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		_ = conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("want the certificate_required alert, got %v", err)
	}
	// Pinning: a client that expects another node refuses this server.
	other, err := client.Dial(e.addr, mustKey(t).ID().Peer(), e.ops[0])
	if err != nil {
		t.Fatal(err)
	}
	err = call(ctxT(t), other, "Status", nil)
	if err == nil || !strings.Contains(err.Error(), "want") {
		t.Fatalf("want a pinning failure, got %v", err)
	}
}
