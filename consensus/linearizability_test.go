package consensus

// Linearizability of registry operations under partitions and follower restarts (DESIGN.md §11,
// "0 porcupine violations"), checked with porcupine against a per-agent model:
//
//	state:    absent | active | revoked
//	register: ok iff absent (→ active); ErrExists when active; ErrRevokedName when revoked
//	revoke:   ok iff active (→ revoked); ErrNotFound when absent; ErrInvalid when revoked
//	check:    ConsistentRead of the agent's status returns the state
//
// A write whose outcome is unknown (timeout, lost leader, closed node) is resolved after the run
// by its command digest in the audit history: applied → an "ok" that returned at the end of the
// history; not applied → dropped (a command that was not applied changed nothing).

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/vigil-mesh/vigil/identity"
)

type linOpKind uint8

const (
	linRegister linOpKind = iota + 1
	linRevoke
	linCheck
)

func (k linOpKind) String() string {
	switch k {
	case linRegister:
		return "register"
	case linRevoke:
		return "revoke"
	case linCheck:
		return "check"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// agentState is the model's per-agent state (and a check's output).
type agentState uint8

const (
	stAbsent agentState = iota
	stActive
	stRevoked
	stOther // quarantined or anything the model never produces: always illegal
)

func (s agentState) String() string {
	return [...]string{"absent", "active", "revoked", "other"}[min(int(s), 3)]
}

// linInput is one request. Req is unique per request; Nonce is the command nonce (writes).
type linInput struct {
	Op    linOpKind
	Name  string
	Req   uint64
	Nonce [16]byte
}

// linOutput is "ok" or an identity error code for writes, the observed state for checks.
type linOutput struct {
	Code  string
	State agentState
}

var (
	codeExists      = identity.CodeOf(identity.ErrExists)
	codeRevokedName = identity.CodeOf(identity.ErrRevokedName)
	codeNotFound    = identity.CodeOf(identity.ErrNotFound)
	codeInvalid     = identity.CodeOf(identity.ErrInvalid)
)

// linStep is the sequential specification of one agent name.
func linStep(state, input, output any) (bool, any) {
	s, in, out := state.(agentState), input.(linInput), output.(linOutput)
	switch in.Op {
	case linRegister:
		switch s {
		case stAbsent:
			return out.Code == "ok", stActive
		case stActive:
			return out.Code == codeExists, s
		case stRevoked:
			return out.Code == codeRevokedName, s
		}
	case linRevoke:
		switch s {
		case stAbsent:
			return out.Code == codeNotFound, s
		case stActive:
			return out.Code == "ok", stRevoked
		case stRevoked:
			return out.Code == codeInvalid, s
		}
	case linCheck:
		return out.State == s, s
	}
	return false, s
}

// registryModel partitions the history by agent name: names are independent in the registry.
var registryModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byName := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			n := op.Input.(linInput).Name
			if _, ok := byName[n]; !ok {
				order = append(order, n)
			}
			byName[n] = append(byName[n], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, n := range order {
			out = append(out, byName[n])
		}
		return out
	},
	Init: func() any { return stAbsent },
	Step: linStep,
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		if in.Op == linCheck {
			return fmt.Sprintf("check(%s) → %s [req %d]", in.Name, out.State, in.Req)
		}
		return fmt.Sprintf("%s(%s) → %s [req %d nonce %x]", in.Op, in.Name, out.Code, in.Req, in.Nonce[:4])
	},
	DescribeState: func(state any) string { return state.(agentState).String() },
}

// linRecord is one completed request as the client saw it.
type linRecord struct {
	client    int
	in        linInput
	out       linOutput
	call, ret int64 // ns since the start of the run (monotonic clock)
	unknown   bool  // write with unknown outcome: resolved from the audit history
	digest    [32]byte
	node      int
}

// checkLinearizable runs porcupine with a timeout; Unknown is a failure like Illegal. On failure
// the visualization is written to dir.
func checkLinearizable(t *testing.T, ops []porcupine.Operation, dir string) porcupine.CheckResult {
	t.Helper()
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(registryModel, ops, 30*time.Second)
	t.Logf("porcupine: %d operations checked in %s: %s", len(ops), time.Since(start).Round(time.Millisecond), res)
	if res != porcupine.Ok {
		path := filepath.Join(dir, "linearizability.html")
		if err := porcupine.VisualizePath(registryModel, info, path); err != nil {
			t.Logf("visualization: %v", err)
		} else {
			t.Logf("visualization written to %s", path)
		}
	}
	return res
}

// linCluster gives clients a race-free view of the nodes while the nemesis restarts them.
type linCluster struct {
	c     *testCluster
	nodes []atomic.Pointer[Node]
}

func (lc *linCluster) node(i int) *Node { return lc.nodes[i].Load() }

func TestLinearizabilityRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node cluster under a nemesis for several seconds")
	}
	rng := seeded(t)
	seed := rng.Uint64()
	c := newTestCluster(t, 3, 1)
	lc := &linCluster{c: c, nodes: make([]atomic.Pointer[Node], len(c.nodes))}
	for i, tn := range c.nodes {
		lc.nodes[i].Store(tn.node)
	}
	var reopened []*Node
	t.Cleanup(func() {
		for _, n := range reopened {
			_ = n.Close()
		}
	})

	const (
		clients   = 6
		runFor    = 8 * time.Second
		epoch     = 2 * time.Second // names change every epoch so registrations keep happening
		namesPer  = 6
		opTimeout = time.Second
	)
	origin := time.Now()
	since := func() int64 { return int64(time.Since(origin)) }
	var reqID atomic.Uint64
	var mu sync.Mutex
	var records []linRecord
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var clientErrs []error
	fail := func(err error) {
		mu.Lock()
		clientErrs = append(clientErrs, err)
		mu.Unlock()
	}

	for cl := range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(cl)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				ep := time.Since(origin) / epoch
				name := fmt.Sprintf("e%d-agent-%d", ep, r.IntN(namesPer))
				ni := r.IntN(len(lc.nodes))
				n := lc.node(ni)
				rec := linRecord{client: cl, node: ni, in: linInput{Name: name, Req: reqID.Add(1)}}
				var p identity.Payload
				switch x := r.IntN(10); {
				case x < 4:
					rec.in.Op = linRegister
					k, err := identity.GenerateKey(crand.Reader)
					if err != nil {
						fail(err)
						return
					}
					p = &identity.RegisterAgent{Name: name, Key: k.Public(), ExpiresAt: time.Now().Add(time.Hour)}
				case x < 7:
					rec.in.Op = linRevoke
					p = &identity.RevokeAgent{Name: name, Reason: "lin"}
				default:
					rec.in.Op = linCheck
				}
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				if p != nil {
					cmd, err := identity.NewCommand(c.cid, p, time.Now(), crand.Reader)
					if err != nil {
						cancel()
						fail(err)
						return
					}
					cmd.Sign(c.ops[0])
					rec.in.Nonce, rec.digest = cmd.Nonce, sha256.Sum256(cmd.Encode())
					rec.call = since()
					_, err = n.Propose(ctx, cmd)
					rec.ret = since()
					switch code := identity.CodeOf(err); {
					case err == nil:
						rec.out.Code = "ok"
					case code != "unknown":
						rec.out.Code = code // the registry's verdict: definite
					default:
						rec.unknown = true // timeout, no leader, closed: the command may still commit
					}
				} else {
					rec.call = since()
					err := n.ConsistentRead(ctx, func(reg *identity.Registry) {
						a, ok := reg.Agent(name)
						switch {
						case !ok:
							rec.out.State = stAbsent
						case a.Status == identity.StatusActive:
							rec.out.State = stActive
						case a.Status == identity.StatusRevoked:
							rec.out.State = stRevoked
						default:
							rec.out.State = stOther
						}
					})
					rec.ret = since()
					if err != nil {
						cancel()
						continue // a failed read observed nothing: drop it
					}
				}
				cancel()
				mu.Lock()
				records = append(records, rec)
				mu.Unlock()
			}
		})
	}

	// Nemesis: isolate a random node for ~1 s, heal, and every third cycle close and reopen a
	// follower on the same host and data dir.
	var nemesisLog []string
	nemesisDone := make(chan struct{})
	var nemesisErr error
	go func() {
		defer close(nemesisDone)
		r := rand.New(rand.NewPCG(seed, 1000))
		sleep := func(d time.Duration) bool {
			select {
			case <-stop:
				return false
			case <-time.After(d):
				return true
			}
		}
		for cycle := 1; ; cycle++ {
			if !sleep(time.Duration(300+r.IntN(400)) * time.Millisecond) {
				return
			}
			vi := r.IntN(len(c.nodes))
			victim := c.nodes[vi]
			var others []*testNode
			for i, tn := range c.nodes {
				if i != vi {
					others = append(others, tn)
				}
			}
			partition(victim, others)
			nemesisLog = append(nemesisLog, fmt.Sprintf("%.2fs partition %s", time.Since(origin).Seconds(), victim.name))
			cut := sleep(time.Duration(700+r.IntN(500)) * time.Millisecond)
			heal(victim, others)
			nemesisLog = append(nemesisLog, fmt.Sprintf("%.2fs heal %s", time.Since(origin).Seconds(), victim.name))
			if !cut {
				return
			}
			if cycle%3 != 0 {
				continue
			}
			off := r.IntN(len(c.nodes))
			for j := range c.nodes {
				i := (j + off) % len(c.nodes)
				tn := c.nodes[i]
				if tn.node.IsLeader() {
					continue
				}
				if err := tn.node.Close(); err != nil {
					nemesisErr = fmt.Errorf("close %s: %w", tn.name, err)
					return
				}
				nemesisLog = append(nemesisLog, fmt.Sprintf("%.2fs close %s", time.Since(origin).Seconds(), tn.name))
				time.Sleep(time.Duration(100+r.IntN(300)) * time.Millisecond)
				n, err := Open(c.config(tn, false, nil))
				if err != nil {
					nemesisErr = fmt.Errorf("reopen %s: %w", tn.name, err)
					return
				}
				reopened = append(reopened, n)
				tn.node = n
				lc.nodes[i].Store(n)
				nemesisLog = append(nemesisLog, fmt.Sprintf("%.2fs reopen %s", time.Since(origin).Seconds(), tn.name))
				break
			}
		}
	}()

	time.Sleep(runFor)
	close(stop)
	wg.Wait()
	<-nemesisDone
	end := since() + 1
	for _, l := range nemesisLog {
		t.Log("nemesis:", l)
	}
	if nemesisErr != nil {
		t.Fatal(nemesisErr)
	}
	if len(clientErrs) > 0 {
		t.Fatal(errors.Join(clientErrs...))
	}

	// Settle: a final write committed in the current term fixes the fate of every earlier entry
	// (a stale entry on a deposed leader can no longer commit), then all replicas converge.
	c.waitFor("a leader after the run", func() bool { return c.leader() != nil })
	var final ApplyResult
	c.waitFor("the final write", func() bool {
		l := c.leader()
		if l == nil {
			return false
		}
		cmd, err := newRegisterCmd(c.cid, "final-write", c.ops[0])
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		final, err = l.node.Propose(ctx, cmd)
		return err == nil || errors.Is(err, identity.ErrExists)
	})
	for _, tn := range c.nodes {
		if err := tn.node.WaitApplied(c.ctx(), final.Index); err != nil {
			t.Fatalf("%s: %v", tn.name, err)
		}
	}
	c.waitConverged(c.nodes...)
	applied := map[[32]byte]bool{}
	c.nodes[0].node.Read(func(r *identity.Registry) { // converged: any replica will do
		for _, e := range r.Audit(identity.AuditQuery{}) {
			applied[e.CommandDigest] = true
		}
	})

	// Resolve unknown outcomes; cross-check the definite ones against the audit history.
	var ops []porcupine.Operation
	counts := map[string]int{}
	lat := map[linOpKind][]time.Duration{}
	for _, rec := range records {
		isWrite := rec.in.Op != linCheck
		switch {
		case rec.unknown && applied[rec.digest]:
			rec.out.Code, rec.ret = "ok", end
			counts["unknown→applied"]++
		case rec.unknown:
			counts["unknown→dropped"]++
			continue
		case isWrite && rec.out.Code == "ok" && !applied[rec.digest]:
			t.Errorf("req %d %s(%s): acknowledged but not in the audit history (lost write)", rec.in.Req, rec.in.Op, rec.in.Name)
		case isWrite && rec.out.Code != "ok" && applied[rec.digest]:
			t.Errorf("req %d %s(%s): rejected with %q but applied", rec.in.Req, rec.in.Op, rec.in.Name, rec.out.Code)
		}
		if isWrite {
			counts[rec.in.Op.String()+" "+rec.out.Code]++
		} else {
			counts["check "+rec.out.State.String()]++
		}
		if !rec.unknown {
			lat[rec.in.Op] = append(lat[rec.in.Op], time.Duration(rec.ret-rec.call))
		}
		ops = append(ops, porcupine.Operation{ClientId: rec.client, Input: rec.in, Call: rec.call, Output: rec.out,
			Return: rec.ret, Metadata: fmt.Sprintf("node n%d", rec.node+1)})
	}
	t.Logf("seed %d: %d requests recorded, outcome counts %v", seed, len(records), counts)
	for op, ds := range lat {
		slices.Sort(ds)
		t.Logf("%s latency (definite outcomes): n=%d p50=%s p90=%s max=%s", op, len(ds), ds[len(ds)/2].Round(time.Millisecond),
			ds[len(ds)*9/10].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	t.Logf("raft term after the run: %d (1 + elections)", c.nodes[0].node.raft.CurrentTerm())
	// A run that exercised nothing proves nothing (for example, a cluster that never led).
	if len(ops) < 60 || counts["register ok"] == 0 || counts["revoke ok"] == 0 || len(lat[linCheck]) == 0 {
		t.Fatalf("only %d operations (%v): the run proves little", len(ops), counts)
	}
	dir := t.TempDir()
	if d := os.Getenv("VIGIL_PORCUPINE_DIR"); d != "" {
		dir = d
	}
	if res := checkLinearizable(t, ops, dir); res != porcupine.Ok {
		t.Fatalf("history is not linearizable: porcupine says %s (seed %d)", res, seed)
	}
}

// TestLinearizabilityCheckerControls proves the checker and the model can fail: hand-made
// histories with a known verdict.
func TestLinearizabilityCheckerControls(t *testing.T) {
	reg := func(name string, code string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: linInput{Op: linRegister, Name: name}, Output: linOutput{Code: code}, Call: call, Return: ret}
	}
	rev := func(name string, code string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: 1, Input: linInput{Op: linRevoke, Name: name}, Output: linOutput{Code: code}, Call: call, Return: ret}
	}
	chk := func(name string, st agentState, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: 2, Input: linInput{Op: linCheck, Name: name}, Output: linOutput{State: st}, Call: call, Return: ret}
	}
	cases := []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"stale read: absent after a completed register", []porcupine.Operation{
			reg("a", "ok", 0, 10), chk("a", stAbsent, 20, 30)}, porcupine.Illegal},
		{"two registrations both succeed", []porcupine.Operation{
			reg("a", "ok", 0, 10), reg("a", "ok", 5, 15)}, porcupine.Illegal},
		{"revoked agent seen active again", []porcupine.Operation{
			reg("a", "ok", 0, 10), rev("a", "ok", 20, 30), chk("a", stActive, 40, 50)}, porcupine.Illegal},
		{"revoke of an absent agent succeeds", []porcupine.Operation{
			rev("a", "ok", 0, 10)}, porcupine.Illegal},
		{"violation in one partition only", []porcupine.Operation{
			reg("a", "ok", 0, 10), reg("b", "ok", 0, 10), chk("a", stActive, 20, 30), chk("b", stAbsent, 20, 30)}, porcupine.Illegal},
		{"concurrent read may see absent", []porcupine.Operation{
			reg("a", "ok", 0, 10), chk("a", stAbsent, 5, 15)}, porcupine.Ok},
		{"full life cycle", []porcupine.Operation{
			chk("a", stAbsent, 0, 5), reg("a", "ok", 10, 20), reg("a", codeExists, 25, 30), rev("a", "ok", 35, 40),
			rev("a", codeInvalid, 45, 50), reg("a", codeRevokedName, 55, 60), chk("a", stRevoked, 65, 70),
			rev("b", codeNotFound, 0, 70)}, porcupine.Ok},
		{"unknown write applied at the end of history", []porcupine.Operation{
			chk("a", stAbsent, 0, 5), reg("a", "ok", 3, 1000), chk("a", stActive, 20, 30)}, porcupine.Ok},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkLinearizable(t, tc.history, t.TempDir()); got != tc.want {
				t.Fatalf("porcupine says %s, want %s", got, tc.want)
			}
		})
	}
}
