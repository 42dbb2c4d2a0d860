package admin_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/admintest"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/adminv1/adminv1connect"
	"github.com/vigil-mesh/vigil/node/admin/client"
	"github.com/vigil-mesh/vigil/node/alerts"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func mustKey(t testing.TB) identity.PrivateKey {
	t.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// env is a real one-node cluster (raft, Badger with SyncWrites, libp2p on 127.0.0.1) with the
// admin server on a TLS port and a Unix socket.
type env struct {
	t        testing.TB
	cid      identity.ClusterID
	ops      []identity.PrivateKey // op1, op2 (threshold 1)
	nodeKey  identity.PrivateKey
	node     *consensus.Node
	srv      *admin.Server
	addr     string
	sock     string
	agent    identity.PrivateKey // key of the active agent "good"
	revoked  identity.PrivateKey // key of the revoked agent "gone"
	hashWant string
	activity *telemetry.Buffer // the telemetry AgentActivity answers from
	keyring  *keyringBackend   // the gossip backend of the keyring methods
	gen      *identity.Command // the signed genesis
	host     host.Host         // node n1's libp2p host
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, ops: []identity.PrivateKey{mustKey(t), mustKey(t)}, nodeKey: mustKey(t)}
	h, err := libp2p.New(libp2p.Identity(e.nodeKey.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	e.host = h
	if e.cid, err = identity.NewClusterID(rand.Reader); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, a := range h.Addrs() {
		addrs = append(addrs, a.String())
	}
	g := &identity.Genesis{ClusterID: e.cid, TrustDomain: "test.vigil", Threshold: 1,
		Operators: []identity.OperatorEntry{{Name: "op1", Key: e.ops[0].Public()}, {Name: "op2", Key: e.ops[1].Public()}},
		Nodes:     []identity.NodeEntry{{Name: "n1", Key: e.nodeKey.Public(), Voter: true, Addrs: addrs}}}
	cfg := consensus.DefaultConfig()
	e.gen = e.signed(g, e.ops[0])
	cfg.DataDir, cfg.Key, cfg.Host, cfg.Genesis, cfg.Bootstrap = t.TempDir(), e.nodeKey, h, e.gen, true
	cfg.Logger = testLogger(t)
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	if e.node, err = consensus.Open(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.node.Close() })
	deadline := time.Now().Add(15 * time.Second)
	for ready := false; !ready; {
		e.node.Read(func(r *identity.Registry) { ready = r.ClusterID() == e.cid })
		if time.Now().After(deadline) {
			t.Fatal("genesis not applied")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.agent, e.revoked = mustKey(t), mustKey(t)
	e.propose(e.signed(&identity.RegisterAgent{Name: "good", Key: e.agent.Public(), Labels: map[string]string{"site": "a"}, ExpiresAt: time.Now().Add(time.Hour)}, e.ops[0]))
	e.propose(e.signed(&identity.RegisterAgent{Name: "gone", Key: e.revoked.Public(), ExpiresAt: time.Now().Add(time.Hour)}, e.ops[0]))
	e.propose(e.signed(&identity.RevokeAgent{Name: "gone", Reason: "test"}, e.ops[0]))

	acfg := admin.DefaultConfig()
	acfg.Key, acfg.Logger = e.nodeKey, testLogger(t)
	e.activity = telemetry.New(16)
	acfg.Activity = e.activity.Query
	st, err := alerts.Open(filepath.Join(t.TempDir(), "state"), alerts.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	matrixAlerts = st
	matrixEnv = e
	acfg.Alerts = storeBackend{st}
	acfg.Decisions = admintest.StoreDecisions{Store: st}
	e.keyring = newKeyringBackend(t, e.nodeKey.ID())
	acfg.Gossip = e.keyring
	e.srv = admin.NewServer(e.node, acfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.ServeTLS(ln); err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.sock = filepath.Join(t.TempDir(), "admin.sock")
	if err := e.srv.ServeUnix(e.sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Close() })
	return e
}

func (e *env) signed(p identity.Payload, keys ...identity.PrivateKey) *identity.Command {
	e.t.Helper()
	c, err := identity.NewCommand(e.cid, p, time.Now(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, k := range keys {
		c.Sign(k)
	}
	return c
}

func (e *env) propose(c *identity.Command) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.node.Propose(ctx, c); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) hash() string {
	var h [32]byte
	e.node.Read(func(r *identity.Registry) { h = r.Hash() })
	return hex.EncodeToString(h[:])
}

// tlsClient dials the admin API as key, pinning the node's ID.
func (e *env) tlsClient(key identity.PrivateKey) client.Client {
	e.t.Helper()
	c, err := client.Dial(e.addr, e.nodeKey.ID().Peer(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// noCertClient speaks TLS 1.3 to the server but presents no certificate.
func (e *env) noCertClient() client.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, ForceAttemptHTTP2: true} //nolint:gosec // the point of the test
	return adminv1connect.NewAdminServiceClient(&http.Client{Transport: tr}, "https://"+e.addr)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// call invokes the named method with a request built from cmd (writes) or a default request
// (reads). It is the one dispatcher the matrix and the malformed-input tests share.
func call(ctx context.Context, c client.Client, method string, cmd []byte) error {
	sc := connect.NewRequest(&adminv1.SignedCommand{Command: cmd})
	var err error
	switch method {
	case "Status":
		_, err = c.Status(ctx, connect.NewRequest(&adminv1.StatusRequest{}))
	case "ListMembers":
		_, err = c.ListMembers(ctx, connect.NewRequest(&adminv1.ListMembersRequest{}))
	case "ListAgents":
		_, err = c.ListAgents(ctx, connect.NewRequest(&adminv1.ListAgentsRequest{}))
	case "GetAgent":
		_, err = c.GetAgent(ctx, connect.NewRequest(&adminv1.GetAgentRequest{Name: "good"}))
	case "ListOperators":
		_, err = c.ListOperators(ctx, connect.NewRequest(&adminv1.ListOperatorsRequest{}))
	case "Audit":
		_, err = c.Audit(ctx, connect.NewRequest(&adminv1.AuditRequest{}))
	case "GetPolicy":
		_, err = c.GetPolicy(ctx, connect.NewRequest(&adminv1.GetPolicyRequest{}))
	case "AgentActivity":
		_, err = c.AgentActivity(ctx, connect.NewRequest(&adminv1.AgentActivityRequest{Agent: "good"}))
	case "ListAlerts":
		_, err = c.ListAlerts(ctx, connect.NewRequest(&adminv1.ListAlertsRequest{}))
	case "ListDecisions":
		_, err = c.ListDecisions(ctx, connect.NewRequest(&adminv1.ListDecisionsRequest{}))
	case "LiftDecision":
		if _, aerr := matrixAlerts.AddDecision(alerts.Decision{Agent: "good", Action: "quarantine", Time: time.Now(), Until: time.Now().Add(time.Hour)}); aerr != nil {
			panic(aerr)
		}
		_, err = c.LiftDecision(ctx, connect.NewRequest(&adminv1.LiftDecisionRequest{Agent: "good", Reason: "matrix"}))
	case "AckAlert", "ResolveAlert":
		a, aerr := matrixAlerts.Add(alerts.Alert{Agent: "good", Model: "hst", Score: 1, Time: time.Now()})
		if aerr != nil {
			panic(aerr)
		}
		if method == "AckAlert" {
			_, err = c.AckAlert(ctx, connect.NewRequest(&adminv1.AckAlertRequest{Id: a.ID}))
		} else {
			_, err = c.ResolveAlert(ctx, connect.NewRequest(&adminv1.ResolveAlertRequest{Id: a.ID, FalsePositive: true}))
		}
	case "GossipKeys":
		_, err = c.GossipKeys(ctx, connect.NewRequest(&adminv1.GossipKeysRequest{}))
	case "ChangeGossipKey":
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		_, err = c.ChangeGossipKey(ctx, connect.NewRequest(&adminv1.ChangeGossipKeyRequest{Op: "install", Key: key,
			SignedOp: signedKeyringOp(matrixEnv.t, matrixEnv, identity.KeyringInstall, key)}))
	case "RegisterAgent":
		_, err = c.RegisterAgent(ctx, sc)
	case "RevokeAgent":
		_, err = c.RevokeAgent(ctx, sc)
	case "QuarantineAgent":
		_, err = c.QuarantineAgent(ctx, sc)
	case "ReleaseAgent":
		_, err = c.ReleaseAgent(ctx, sc)
	case "RenewAgent":
		_, err = c.RenewAgent(ctx, sc)
	case "RotateAgentKey":
		_, err = c.RotateAgentKey(ctx, sc)
	case "ReinstateAgent":
		_, err = c.ReinstateAgent(ctx, sc)
	case "AddOperator":
		_, err = c.AddOperator(ctx, sc)
	case "RemoveOperator":
		_, err = c.RemoveOperator(ctx, sc)
	case "SetThreshold":
		_, err = c.SetThreshold(ctx, sc)
	case "AdmitNode":
		_, err = c.AdmitNode(ctx, sc)
	case "RemoveNode":
		_, err = c.RemoveNode(ctx, sc)
	case "ApplyPolicy":
		_, err = c.ApplyPolicy(ctx, sc)
	case "SetAutomatedResponse":
		_, err = c.SetAutomatedResponse(ctx, sc)
	case "SetRevokeQuorum":
		_, err = c.SetRevokeQuorum(ctx, sc)
	default:
		panic("unknown method " + method)
	}
	return err
}

// writeOrder lists the write methods in an order in which, for one subject, each command is
// valid after the previous ones.
var writeOrder = []string{"RegisterAgent", "QuarantineAgent", "ReleaseAgent", "RenewAgent",
	"RotateAgentKey", "RevokeAgent", "ReinstateAgent", "AddOperator", "RemoveOperator",
	"SetThreshold", "AdmitNode", "RemoveNode", "ApplyPolicy", "SetAutomatedResponse", "SetRevokeQuorum"}

// readMethods: the methods that take no signed command (the alert methods; ChangeGossipKey
// installs a fresh key, signed by an operator as a keyring op, not a registry command).
var readMethods = []string{"Status", "ListMembers", "ListAgents", "GetAgent", "ListOperators", "Audit", "GetPolicy", "AgentActivity",
	"ListAlerts", "ListDecisions", "AckAlert", "ResolveAlert", "GossipKeys", "ChangeGossipKey", "LiftDecision"}

// matrixAlerts is the alert store of the newest env: call adds the alert it acks or resolves.
var matrixAlerts *alerts.Store

// matrixEnv is the newest env: call signs the keyring op it sends with its first operator.
var matrixEnv *env

// storeBackend serves the alert RPCs straight from a store.
type storeBackend struct{ st *alerts.Store }

func (b storeBackend) ListAlerts(q alerts.Query) ([]alerts.Alert, error) { return b.st.List(q) }
func (b storeBackend) AckAlert(id, who string) (alerts.Alert, error) {
	return b.st.Ack(id, who, time.Now())
}
func (b storeBackend) ResolveAlert(id, who string, fp bool) (alerts.Alert, error) {
	return b.st.Resolve(id, who, fp, time.Now())
}

// payloadFor returns a payload for method about subject that the registry accepts now, given
// the writeOrder sequence for that subject so far.
func (e *env) payloadFor(method, subject string) identity.Payload {
	exp := time.Now().Add(time.Hour)
	switch method {
	case "RegisterAgent":
		return &identity.RegisterAgent{Name: subject, Key: mustKey(e.t).Public(), ExpiresAt: exp}
	case "QuarantineAgent":
		return &identity.QuarantineAgent{Name: subject, Reason: "matrix"}
	case "ReleaseAgent":
		return &identity.ReleaseAgent{Name: subject}
	case "RenewAgent":
		return &identity.RenewAgent{Name: subject, ExpiresAt: exp.Add(time.Hour)}
	case "RotateAgentKey":
		return &identity.RotateAgentKey{Name: subject, NewKey: mustKey(e.t).Public()}
	case "RevokeAgent":
		return &identity.RevokeAgent{Name: subject, Reason: "matrix"}
	case "ReinstateAgent":
		return &identity.ReinstateAgent{Name: subject, Key: mustKey(e.t).Public(), ExpiresAt: exp}
	case "AddOperator":
		return &identity.AddOperator{Operator: identity.OperatorEntry{Name: "op-" + subject, Key: mustKey(e.t).Public()}}
	case "RemoveOperator":
		return &identity.RemoveOperator{Name: "op-" + subject}
	case "SetThreshold":
		return &identity.SetThreshold{Threshold: 1}
	case "AdmitNode":
		return &identity.AdmitNode{Node: identity.NodeEntry{Name: "node-" + subject, Key: mustKey(e.t).Public(), Site: "b"}}
	case "RemoveNode":
		return &identity.RemoveNode{Name: "node-" + subject}
	case "SetAutomatedResponse":
		var on bool
		e.node.Read(func(r *identity.Registry) { on = r.AutomatedResponse() })
		return &identity.SetAutomatedResponse{Enabled: !on}
	case "SetRevokeQuorum":
		return &identity.SetRevokeQuorum{Quorum: 2}
	case "ApplyPolicy":
		var v uint64
		e.node.Read(func(r *identity.Registry) { v, _ = r.Policy() })
		return &identity.SetPolicy{Version: v + 1, Document: []byte("monitoring:\n  enabled: true\n")}
	}
	panic("no payload for " + method)
}

// follower admits a non-voting node n2, starts it (joining through n1) with an admin server on a
// Unix socket, and waits until it has caught up. It returns a client of n2's admin API and n2.
func (e *env) follower() (client.Client, *consensus.Node) {
	e.t.Helper()
	key := mustKey(e.t)
	h, err := libp2p.New(libp2p.Identity(key.Libp2p()), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = h.Close() })
	var addrs []string
	for _, a := range h.Addrs() {
		addrs = append(addrs, a.String())
	}
	e.propose(e.signed(&identity.AdmitNode{Node: identity.NodeEntry{Name: "n2", Key: key.Public(), Addrs: addrs}}, e.ops[0]))
	cfg := consensus.DefaultConfig()
	cfg.DataDir, cfg.Key, cfg.Host, cfg.Genesis = e.t.TempDir(), key, h, e.gen
	cfg.Join = []peer.AddrInfo{{ID: e.host.ID(), Addrs: e.host.Addrs()}}
	cfg.Logger = testLogger(e.t).With("n", "n2")
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	n2, err := consensus.Open(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = n2.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := n2.WaitApplied(ctx, e.node.AppliedIndex()); err != nil {
		e.t.Fatal(err)
	}
	acfg := admin.DefaultConfig()
	acfg.Key, acfg.Logger = key, testLogger(e.t)
	srv := admin.NewServer(n2, acfg)
	e.t.Cleanup(func() { _ = srv.Close() })
	sock := filepath.Join(e.t.TempDir(), "n2.sock")
	if err := srv.ServeUnix(sock); err != nil {
		e.t.Fatal(err)
	}
	return client.DialUnix(sock), n2
}
