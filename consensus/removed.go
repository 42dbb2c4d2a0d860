package consensus

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/vigil-mesh/vigil/identity"
)

// RemovedProtocol carries a removal notice: before the leader takes a removed node out of the
// raft configuration it sends that node the committed, operator-signed remove-node command.
// Without it the removed node rarely learns of its removal: every node cuts it off as soon as it
// applies the command, usually before the removed node has learnt that the entry committed,
// and it would campaign for ever.
const RemovedProtocol protocol.ID = "/vigil/removed/1"

// removedFile records in the data dir that this node was removed (JSON of Removal), so that a
// restarted node says so and does not start raft.
const removedFile = "removed"

// maxRemovedFile caps the removal record read at start (a few operator names).
const maxRemovedFile = 4096

// maxRemovals caps the remove-node commands the FSM keeps for removal notices.
const maxRemovals = 32

// Removal describes the removal of this node from the cluster by operators.
type Removal struct {
	// Node is this node's ID.
	Node string `json:"node"`
	// Index is the raft index of the remove-node command; 0 when it is not known (the removal
	// came with a snapshot).
	Index uint64 `json:"index"`
	// By names the operators who signed it (their IDs when the registry no longer names them).
	By []string `json:"by"`
	// At is the registry time of the removal; zero when not known.
	At time.Time `json:"at"`
}

// String is the operator-facing sentence.
func (r Removal) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "this node (ID %s) was removed from the cluster", r.Node)
	if r.Index != 0 {
		fmt.Fprintf(&b, " at index %d", r.Index)
	}
	if len(r.By) > 0 {
		fmt.Fprintf(&b, " by %s", strings.Join(r.By, ", "))
	}
	if !r.At.IsZero() {
		fmt.Fprintf(&b, " (%s)", r.At.UTC().Format(time.RFC3339))
	}
	b.WriteString("; raft is stopped. Its key can never be admitted again: to bring this machine back, " +
		"give it a new node key and an empty data dir and have an operator admit the new key")
	return b.String()
}

// RemovedError is returned by Open for a data dir whose node was removed, and by Propose,
// ConsistentRead and WaitForLeader once this node learnt its removal. It wraps ErrRemoved.
type RemovedError struct{ Removal Removal }

func (e *RemovedError) Error() string { return "consensus: " + e.Removal.String() }
func (e *RemovedError) Unwrap() error { return ErrRemoved }

// Removed reports whether this node learnt that it was removed from the cluster, and how.
func (n *Node) Removed() (Removal, bool) {
	if r := n.removed.Load(); r != nil {
		return *r, true
	}
	return Removal{}, false
}

// removedErr is the RemovedError once this node was removed, else nil.
func (n *Node) removedErr() error {
	if r := n.removed.Load(); r != nil {
		return &RemovedError{Removal: *r}
	}
	return nil
}

// selfRemoved is the FSM's callback when the local registry shows this node's key retired:
// after applying the remove-node command at index (0 after a restore). It runs on the apply
// goroutine and must not block.
func (n *Node) selfRemoved(index uint64) {
	r := Removal{Node: n.self.String(), Index: index}
	n.fsm.Read(func(reg *identity.Registry) {
		var last *identity.AuditEntry
		for _, e := range reg.Audit(identity.AuditQuery{Principal: n.self.String()}) {
			if e.Kind == identity.KindRemoveNode {
				last = &e
			}
		}
		if last != nil {
			r.By, r.At = operatorNames(reg, last.Signers), last.Time
		}
	})
	n.markRemoved(r)
}

// operatorNames names the signers by the registry's operators (an ID when it names none).
func operatorNames(reg *identity.Registry, signers []identity.ID) []string {
	ops := reg.Operators()
	out := make([]string, 0, len(signers))
	for _, s := range signers {
		name := s.String()
		if i := slices.IndexFunc(ops, func(o identity.Operator) bool { return o.ID == s }); i >= 0 {
			name = ops[i].Name
		}
		out = append(out, name)
	}
	return out
}

// markRemoved records the removal once: it logs it, persists it in the data dir (a restart
// then refuses to start raft) and shuts raft down in the background (this may run on raft's
// apply goroutine, which Shutdown waits for).
func (n *Node) markRemoved(r Removal) {
	if !n.removed.CompareAndSwap(nil, &r) {
		return
	}
	n.log.Error("consensus: this node was removed from the cluster; stopping raft", "index", r.Index,
		"by", strings.Join(r.By, ","), "reason", r.String())
	if err := writeRemoved(n.cfg.DataDir, r); err != nil {
		n.log.Error("consensus: cannot record the removal in the data dir", "err", err)
	}
	go func() {
		if err := n.raft.Shutdown().Error(); err != nil {
			n.log.Warn("consensus: raft shutdown after removal", "err", err)
		}
		n.raftStopped.Store(true)
	}()
}

func writeRemoved(dir string, r Removal) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeIDFile(filepath.Join(dir, removedFile), string(b))
}

// readRemoved returns the removal recorded in dir, if any.
func readRemoved(dir string) (*Removal, error) {
	path := filepath.Join(dir, removedFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, errf(ErrDataDir, "%v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRemovedFile+1))
	if err != nil {
		return nil, errf(ErrDataDir, "read %s: %v", path, err)
	}
	if len(b) > maxRemovedFile {
		return nil, errf(ErrDataDir, "%s is larger than %d bytes", path, maxRemovedFile)
	}
	var r Removal
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, errf(ErrDataDir, "%s: %v", path, err)
	}
	return &r, nil
}

// encodeRemovalNotice is the notice: the raft index (uint64, big-endian), then the command.
func encodeRemovalNotice(index uint64, cmd []byte) []byte {
	out := make([]byte, 8, 8+len(cmd))
	binary.BigEndian.PutUint64(out, index)
	return append(out, cmd...)
}

// sendRemovalNotice tells p, best effort, that the command at index removed it (leader, before
// it takes p out of the raft configuration, while p may still speak to it). It reports whether
// p acknowledged it; a notice p acknowledged once is not sent again.
func (n *Node) sendRemovalNotice(ctx context.Context, p peer.ID, rec removalRec) bool {
	if _, done := n.noticed.Load(p); done {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, min(n.cfg.RPCTimeout, 2*time.Second))
	defer cancel()
	body, _, err := n.roundTrip(ctx, p, RemovedProtocol, encodeRemovalNotice(rec.index, rec.cmd), maxResultMsg)
	if err == nil {
		var r wireResult
		if r, err = decodeResult(bytes.NewReader(body)); err == nil {
			err = r.Err()
		}
	}
	if err != nil {
		n.log.Warn("consensus: removal notice not delivered", "peer", p.String(), "err", err)
		return false
	}
	n.noticed.Store(p, struct{}{})
	n.log.Info("consensus: removal notice delivered", "peer", p.String(), "index", rec.index)
	return true
}

// noticeTimeout bounds NoticeRemovedPeer: it runs on the enforcer's goroutine, just before
// the connections of p are closed.
const noticeTimeout = time.Second

// NoticeRemovedPeer sends p the removal notice when this replica applied the command that
// removed p from the cluster, over a connection already open (it never dials: the gater refuses
// a removed node), and reports whether p was such a node. The enforcer calls it just before it
// closes the connections of a peer the registry no longer admits: every node, not only the
// leader, then tells the removed node, on the connection it is about to close; otherwise the
// first node to apply the removal cuts the removed node off before anyone has told it, and
// the leader's own notice is refused at dial.
func (n *Node) NoticeRemovedPeer(p peer.ID) bool {
	id, err := identity.IDFromPeer(p)
	if err != nil {
		return false
	}
	rec, ok := n.fsm.removal(id)
	if !ok {
		return false
	}
	if len(n.h.Network().ConnsToPeer(p)) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(network.WithNoDial(n.ctx, "removal notice"), noticeTimeout)
	defer cancel()
	n.sendRemovalNotice(ctx, p, rec)
	return true
}

// handleRemoved accepts a removal notice from an admitted node: the command must be a valid
// remove-node command of this cluster that names this node, signed by operators this node's
// registry knows. Only then does this node stop raft.
func (n *Node) handleRemoved(s network.Stream) {
	n.serve(s, 8+identity.MaxCommandSize, func(_ context.Context, p peer.ID, req []byte) []byte {
		r, err := n.checkRemovalNotice(req)
		if err != nil {
			n.log.Warn("consensus: removal notice refused", "from", p.String(), "err", err)
			return encodeResult(resultFor(0, err))
		}
		n.log.Info("consensus: removal notice received", "from", p.String(), "index", r.Index)
		n.markRemoved(r)
		return encodeResult(resultFor(r.Index, nil))
	}, nil)
}

func (n *Node) checkRemovalNotice(req []byte) (Removal, error) {
	if len(req) < 8 {
		return Removal{}, errf(ErrProtocol, "removal notice: %d bytes", len(req))
	}
	index := binary.BigEndian.Uint64(req)
	cmd, err := identity.DecodeCommand(req[8:])
	if err != nil {
		return Removal{}, fmt.Errorf("consensus: removal notice: %w", err)
	}
	if cmd.ClusterID != n.cluster {
		return Removal{}, fmt.Errorf("consensus: removal notice: cluster %s is not %s: %w", cmd.ClusterID, n.cluster, identity.ErrWrongCluster)
	}
	v, err := cmd.Verify()
	if err != nil {
		return Removal{}, fmt.Errorf("consensus: removal notice: %w", err)
	}
	rm, ok := v.Payload().(*identity.RemoveNode)
	if !ok {
		return Removal{}, errf(ErrProtocol, "removal notice carries a %s command", cmd.Kind)
	}
	r := Removal{Node: n.self.String(), Index: index, At: cmd.IssuedAt}
	n.fsm.Read(func(reg *identity.Registry) {
		nd, listed := reg.Node(n.self)
		_, st, known := reg.Principal(n.self, time.Now())
		retired := !known && st == identity.StatusRevoked
		if !retired && (!listed || nd.Name != rm.Name) {
			err = fmt.Errorf("consensus: removal notice: it removes node %q, not this node: %w", rm.Name, identity.ErrInvalid)
			return
		}
		if !retired {
			// Names can be reused: the command that removed an earlier node of this name is in
			// this registry's history already and must not stop this one.
			for _, e := range reg.Audit(identity.AuditQuery{Principal: rm.Name}) {
				if e.CommandDigest == v.Digest() {
					err = fmt.Errorf("consensus: removal notice: the command was applied at audit entry %d and removed an earlier node named %q: %w",
						e.Seq, rm.Name, identity.ErrReplay)
					return
				}
			}
		}
		for _, s := range v.Signers() {
			if role, _, ok := reg.Principal(s, time.Now()); !ok || role != identity.RoleOperator {
				err = fmt.Errorf("consensus: removal notice: signer %s is not an operator: %w", s, identity.ErrUnauthorized)
				return
			}
		}
		r.By = operatorNames(reg, v.Signers())
	})
	return r, err
}
