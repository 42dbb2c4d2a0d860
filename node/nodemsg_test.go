package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// lockedBuffer collects a node's logs for a test to search.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// bufferLogger logs at info and above into a buffer.
func bufferLogger() (*slog.Logger, *lockedBuffer) {
	buf := &lockedBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})), buf
}

// waitReadyz waits until /readyz answers 503 with a body containing want, and returns the body.
func waitReadyz(t *testing.T, n *Node, want string) string {
	t.Helper()
	var body string
	waitUntil(t, "/readyz to say "+want, func() bool {
		var code int
		code, body = get(t, n, "/readyz")
		return code == 503 && strings.Contains(body, want)
	})
	return body
}

// TestJoinNotAdmittedSaysSo: a node started before an operator admitted it is refused by the
// cluster's gaters right after the handshake; its /readyz (and log) say that it is not admitted
// and give the `vigil members admit` command for it. A node whose join address has nothing
// listening says that the peer cannot be reached. Once admitted, the first node joins.
func TestJoinNotAdmittedSaysSo(t *testing.T) {
	c := newE2ECluster(t, 3, "")
	c.start(0)

	n2, err := Start(c.cfgs[1], testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[1] = n2
	id := c.keys[1].ID().String()
	body := waitReadyz(t, n2, "is not admitted by the cluster")
	for _, want := range []string{"not ready: joining:", "this node (ID " + id + ")",
		"run `vigil members admit node-2 --node-id " + id + " --addr " + c.addrs[1] + "` on an operator's machine"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz %q lacks %q", body, want)
		}
	}
	if err := n2.Consensus().JoinProblem(); !errors.Is(err, consensus.ErrNotAdmitted) {
		t.Errorf("JoinProblem = %v, want ErrNotAdmitted", err)
	}

	// node-3 names a join peer at an address where nothing listens.
	c.cfgs[2].Join = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", freePort(t), c.keys[0].ID())}
	n3, err := Start(c.cfgs[2], testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[2] = n3
	waitReadyz(t, n3, "cannot reach join peer "+c.keys[0].ID().String())
	if err := n3.Consensus().JoinProblem(); !errors.Is(err, consensus.ErrUnreachable) {
		t.Errorf("JoinProblem = %v, want ErrUnreachable", err)
	}

	// The operator admits node-2: its next join attempt succeeds and it becomes ready.
	c.admit(c.nodes[0], 1)
	waitUntil(t, "node-2 ready once admitted", func() bool { return n2.ready() == nil })
	if err := n2.Consensus().JoinProblem(); err != nil {
		t.Errorf("JoinProblem after joining = %v", err)
	}
}

// TestRemovedNodeStops: in a cluster of four, node-4 is removed. It learns it (the leader's
// removal notice, or its own replica applying the command), stops raft instead of campaigning
// for ever, and says so on /readyz and on the admin API while /healthz still answers; started
// again it says the same and does not start raft. The other three still commit.
func TestRemovedNodeStops(t *testing.T) {
	c := startE2ECluster(t, 4)
	leader := c.nodes[0]
	for _, n := range c.nodes {
		if n.Consensus().IsLeader() {
			leader = n
		}
	}
	n4 := c.nodes[3]
	c.propose(leader, &identity.RemoveNode{Name: "node-4"})

	body := waitReadyz(t, n4, "was removed from the cluster")
	id := c.keys[3].ID().String()
	for _, want := range []string{"this node (ID " + id + ") was removed from the cluster at index ", " by op ", "raft is stopped"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz %q lacks %q", body, want)
		}
	}
	rm, ok := n4.Consensus().Removed()
	if !ok || rm.Index == 0 || len(rm.By) != 1 || rm.By[0] != "op" {
		t.Fatalf("Removed() = %+v, %v", rm, ok)
	}
	leader.Consensus().Read(func(r *identity.Registry) {
		if _, st, ok := r.Principal(c.keys[3].ID(), time.Now()); ok || st != identity.StatusRevoked {
			t.Errorf("the registry holds node-4's key as %v (known %v), want retired", st, ok)
		}
	})
	waitUntil(t, "node-4's raft to stop", func() bool { return n4.Consensus().State() == raft.Shutdown })
	if code, _ := get(t, n4, "/healthz"); code != 200 {
		t.Errorf("/healthz of the removed node: %d", code)
	}
	if _, err := n4.Consensus().Propose(context.Background(), &identity.Command{}); !errors.Is(err, consensus.ErrRemoved) {
		t.Errorf("Propose on the removed node: %v, want ErrRemoved", err)
	}
	wantRemovedAdmin(t, n4, c.op, rm.Index)

	// The three others still commit.
	c.nodes[3] = nil
	c.register("after-removal")

	// Restarted, it says the same from its data dir and does not start raft.
	if err := n4.Close(); err != nil {
		t.Logf("close node-4: %v", err)
	}
	log, logs := bufferLogger()
	again, err := Start(c.cfgs[3], log)
	if err != nil {
		t.Fatalf("restart of the removed node: %v", err)
	}
	defer again.Close()
	if again.Consensus() != nil {
		t.Fatal("the removed node opened its registry (raft) again")
	}
	code, body := get(t, again, "/readyz")
	if code != 503 || !strings.Contains(body, fmt.Sprintf("was removed from the cluster at index %d by op", rm.Index)) {
		t.Errorf("/readyz after restart: %d %q", code, body)
	}
	if !strings.Contains(logs.String(), "this node was removed from the cluster; raft is not started") {
		t.Errorf("the restart log does not say the node was removed:\n%s", logs)
	}
	wantRemovedAdmin(t, again, c.op, rm.Index)
}

// wantRemovedAdmin checks that n's admin API answers an operator with the removal.
func wantRemovedAdmin(t *testing.T, n *Node, op identity.PrivateKey, index uint64) {
	t.Helper()
	ac, err := client.Dial(n.AdminAddr().String(), n.ID().Peer(), op)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = ac.ListAgents(ctx, connect.NewRequest(&adminv1.ListAgentsRequest{}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition ||
		!strings.Contains(ce.Message(), fmt.Sprintf("was removed from the cluster at index %d", index)) ||
		ce.Meta().Get(admin.ErrorCodeHeader) != "consensus.removed" {
		t.Errorf("ListAgents on the removed node: %v, want failed_precondition with the removal", err)
	}
}

// TestRestartedNodeNotReadyAnswersUnavailable: a node restarted while the rest of its cluster is
// down cannot replay its registry (it needs a leader's commit index); until it has, its admin API
// answers the operator Unavailable "node not ready: replaying the registry (applied X of Y)",
// not PermissionDenied (the operator's key is simply not replayed yet). Once the cluster is back,
// the operator is served.
func TestRestartedNodeNotReadyAnswersUnavailable(t *testing.T) {
	c := startE2ECluster(t, 3)
	for i := range c.nodes {
		c.stop(i)
	}
	n2, err := Start(c.cfgs[1], testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[1] = n2
	waitReadyz(t, n2, "replaying the registry (applied ")
	ac, err := client.Dial(n2.AdminAddr().String(), n2.ID().Peer(), c.op)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = ac.Status(ctx, connect.NewRequest(&adminv1.StatusRequest{}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable ||
		!strings.Contains(ce.Message(), "node not ready: replaying the registry (applied ") {
		t.Fatalf("Status on a node that has not replayed its registry: %v, want unavailable", err)
	}

	for _, i := range []int{0, 2} {
		n, err := Start(c.cfgs[i], testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[i] = n
	}
	waitUntil(t, "node-2 ready after the cluster is back", func() bool { return n2.ready() == nil })
	if _, err := ac.Status(ctx, connect.NewRequest(&adminv1.StatusRequest{})); err != nil {
		t.Fatalf("Status once ready: %v", err)
	}
}
