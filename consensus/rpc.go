package consensus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"

	"github.com/vigil-mesh/vigil/consensus/transport"
	"github.com/vigil-mesh/vigil/identity"
)

// Node-to-node protocols besides raft's own (/vigil/raft/1). All are gated by the same
// authorizer as raft; join answers a refused peer with a not-admitted result instead of a reset
// so that an operator sees why a new node waits.
const (
	JoinProtocol      protocol.ID = "/vigil/join/1"
	ProposeProtocol   protocol.ID = "/vigil/propose/1"
	ReadIndexProtocol protocol.ID = "/vigil/readindex/1"
)

// Caps on whole messages read from a stream (the field caps apply inside them).
const (
	maxResultMsg = 8 + 2 + maxCodeLen + 2 + maxDetailLen
	maxJoinMsg   = maxResultMsg + 2 + maxPeerIDLen + 2 + maxJoinNodes*(2+maxPeerIDLen+1+maxJoinAddrs*(2+identity.MaxAddrLen))
)

// Propose replicates cmd and returns the FSM's verdict. On the leader it is a raft.Apply; on a
// follower the command is forwarded to the leader over /vigil/propose/1, retried once when the
// leadership changed before the leader acted on it. The returned error is nil when the command
// was applied; it wraps an identity sentinel when the registry rejected it (res.Index is then the
// entry that carried it, or 0 when a stateless check refused it before replication);
// ErrNoLeader, ErrTimeout (the outcome is unknown: the command may still commit) or ErrClosed
// otherwise. The deadline of ctx bounds the whole call (Config.ApplyTimeout without one).
func (n *Node) Propose(ctx context.Context, cmd *identity.Command) (ApplyResult, error) {
	if n.ctx.Err() != nil {
		return ApplyResult{}, errf(ErrClosed, "propose")
	}
	if err := n.removedErr(); err != nil {
		return ApplyResult{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.ApplyTimeout)
		defer cancel()
	}
	b := cmd.Encode()
	if len(b) > identity.MaxCommandSize {
		return ApplyResult{}, fmt.Errorf("consensus: propose: command of %d bytes: %w: %w", len(b), identity.ErrTooLarge, identity.ErrMalformed)
	}
	// Signatures are checked before replication too (stateless, so the verdict is the one
	// every replica would reach): forged commands never reach the log.
	if _, err := cmd.Verify(); err != nil {
		return ApplyResult{}, fmt.Errorf("consensus: propose: %w", err)
	}
	var lastErr error
	for range 2 {
		if err := n.WaitForLeader(ctx); err != nil {
			return ApplyResult{}, errors.Join(err, lastErr)
		}
		var res ApplyResult
		var err error
		leader, term := n.Leader(), n.raft.CurrentTerm()
		if n.IsLeader() {
			res, err = n.applyLocal(ctx, b)
		} else {
			res, err = n.forwardPropose(ctx, b)
		}
		if !errors.Is(err, errNotLeader) {
			return res, err
		}
		lastErr = err
		n.waitLeaderChange(ctx, leader, term)
	}
	return ApplyResult{}, fmt.Errorf("consensus: propose: leadership changed twice: %w", lastErr)
}

// waitLeaderChange waits, after a not-leader answer, until this node knows a leader other than
// old or a term other than term (the same node may win again), or ctx ends.
func (n *Node) waitLeaderChange(ctx context.Context, old peer.ID, term uint64) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if l := n.Leader(); l != "" && (l != old || n.raft.CurrentTerm() != term) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// applyLocal applies encoded command bytes through this node's raft (it must lead).
func (n *Node) applyLocal(ctx context.Context, b []byte) (ApplyResult, error) {
	timeout := timeoutFrom(ctx, n.cfg.ApplyTimeout)
	if timeout <= 0 {
		return ApplyResult{}, errf(ErrTimeout, "propose: deadline passed")
	}
	f := n.raft.Apply(b, timeout)
	if err := waitFuture(ctx, f); err != nil {
		return ApplyResult{}, raftErr("propose", err)
	}
	res, ok := f.Response().(ApplyResult)
	if !ok {
		return ApplyResult{}, fmt.Errorf("consensus: propose: unexpected FSM response %T", f.Response())
	}
	return res, res.Err
}

// raftErr maps raft's errors onto this package's sentinels.
func raftErr(op string, err error) error {
	switch {
	case errors.Is(err, ErrTimeout):
		return fmt.Errorf("consensus: %s: outcome unknown: %w", op, err)
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("consensus: %s: %v: %w", op, err, errNotLeader)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("consensus: %s: %v: %w", op, err, ErrTimeout)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("consensus: %s: %v, outcome unknown: %w", op, err, ErrTimeout)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("consensus: %s: %v: %w", op, err, ErrClosed)
	}
	return fmt.Errorf("consensus: %s: %w", op, err)
}

// leaderPeer returns the leader and adds its raft address to the peerstore so a stream can be
// opened to it.
func (n *Node) leaderPeer() (peer.ID, error) {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return "", errf(ErrNoLeader, "no known leader")
	}
	p, err := peer.Decode(string(id))
	if err != nil {
		return "", errf(ErrNoLeader, "leader id %q: %v", id, err)
	}
	if ai, err := transport.ParseServerAddress(addr); err == nil && ai.ID == p && len(ai.Addrs) > 0 {
		n.h.Peerstore().AddAddrs(p, ai.Addrs, peerstore.AddressTTL)
	}
	return p, nil
}

// exchange opens proto to p (authorised like raft), writes req, half-closes, and returns the
// response body read through a cap of max bytes. sent reports whether the request left.
func (n *Node) exchange(ctx context.Context, p peer.ID, proto protocol.ID, req []byte, max int64) (resp []byte, sent bool, err error) {
	if err := n.authorize(p); err != nil {
		return nil, false, err
	}
	return n.roundTrip(ctx, p, proto, req, max)
}

// roundTrip is exchange without the authorisation of p (the removal notice goes to a node the
// registry no longer admits).
func (n *Node) roundTrip(ctx context.Context, p peer.ID, proto protocol.ID, req []byte, max int64) (resp []byte, sent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RPCTimeout)
	defer cancel()
	s, err := n.h.NewStream(network.WithAllowLimitedConn(ctx, "vigil"), p, proto)
	if err != nil {
		return nil, false, fmt.Errorf("consensus: open %s to %s: %w", proto, p, err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if _, err := s.Write(req); err != nil {
		_ = s.Reset()
		return nil, false, fmt.Errorf("consensus: write %s to %s: %w", proto, p, err)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return nil, true, fmt.Errorf("consensus: close write %s: %w", proto, err)
	}
	body, err := io.ReadAll(io.LimitReader(s, max+1))
	if err != nil {
		_ = s.Reset()
		return nil, true, fmt.Errorf("consensus: read %s from %s: %w", proto, p, err)
	}
	if int64(len(body)) > max {
		_ = s.Reset()
		return nil, true, errf(ErrProtocol, "%s response from %s exceeds %d bytes", proto, p, max)
	}
	return body, true, nil
}

// forwardPropose sends the command to the leader. A request that never left is reported as
// errNotLeader (safe to retry); a lost response is ErrTimeout (outcome unknown).
func (n *Node) forwardPropose(ctx context.Context, b []byte) (ApplyResult, error) {
	leader, err := n.leaderPeer()
	if err != nil {
		return ApplyResult{}, err
	}
	body, sent, err := n.exchange(ctx, leader, ProposeProtocol, encodeProposeRequest(b), maxResultMsg)
	if err != nil {
		if !sent {
			return ApplyResult{}, fmt.Errorf("%w (%w)", err, errNotLeader)
		}
		return ApplyResult{}, fmt.Errorf("consensus: propose: outcome unknown: %v: %w", err, ErrTimeout)
	}
	r, err := decodeResult(bytes.NewReader(body))
	if err != nil {
		return ApplyResult{}, fmt.Errorf("consensus: propose: outcome unknown: %v: %w", err, ErrTimeout)
	}
	rerr := r.Err()
	return ApplyResult{Index: r.Index, Err: rerr}, rerr
}

// serve runs one request/response exchange on an accepted stream: authorise, read the request
// through a cap, call handle, write the response, close.
func (n *Node) serve(s network.Stream, maxReq int64, handle func(ctx context.Context, p peer.ID, req []byte) []byte, refuse func(error) []byte) {
	defer s.Close()
	p := s.Conn().RemotePeer()
	if err := n.authorize(p); err != nil {
		if refuse == nil {
			_ = s.Reset()
			return
		}
		_ = s.SetDeadline(time.Now().Add(n.cfg.RPCTimeout))
		_, _ = s.Write(refuse(err))
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RPCTimeout)
	defer cancel()
	_ = s.SetDeadline(time.Now().Add(n.cfg.RPCTimeout))
	req, err := io.ReadAll(io.LimitReader(s, maxReq+1))
	if err != nil || int64(len(req)) > maxReq {
		_ = s.Reset()
		return
	}
	if _, err := s.Write(handle(ctx, p, req)); err != nil {
		_ = s.Reset()
	}
}

func (n *Node) handlePropose(s network.Stream) {
	n.serve(s, 4+identity.MaxCommandSize, func(ctx context.Context, _ peer.ID, req []byte) []byte {
		b, err := decodeProposeRequest(bytes.NewReader(req))
		if err != nil {
			return encodeResult(resultFor(0, err))
		}
		cmd, err := identity.DecodeCommand(b)
		if err != nil {
			return encodeResult(resultFor(0, err))
		}
		if !n.IsLeader() {
			return encodeResult(resultFor(0, errNotLeader))
		}
		if _, err := cmd.Verify(); err != nil {
			return encodeResult(resultFor(0, err))
		}
		res, err := n.applyLocal(ctx, b)
		return encodeResult(resultFor(res.Index, err))
	}, nil)
}

// ConsistentRead runs fn on a registry that reflects every write committed before the call
// (linearizable read, raft's read-index): the leader confirms it still leads (VerifyLeader) and
// returns its commit index; this node waits until it has applied that index.
func (n *Node) ConsistentRead(ctx context.Context, fn func(*identity.Registry)) error {
	if err := n.removedErr(); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.ApplyTimeout)
		defer cancel()
	}
	var idx uint64
	var err error
	for range 2 {
		if err = n.WaitForLeader(ctx); err != nil {
			return err
		}
		leader, term := n.Leader(), n.raft.CurrentTerm()
		if n.IsLeader() {
			idx, err = n.leaderReadIndex(ctx)
		} else {
			idx, err = n.forwardReadIndex(ctx)
		}
		if !errors.Is(err, errNotLeader) {
			break
		}
		n.waitLeaderChange(ctx, leader, term)
	}
	if err != nil {
		return err
	}
	if err := n.WaitApplied(ctx, idx); err != nil {
		return err
	}
	n.fsm.Read(fn)
	return nil
}

// leaderReadIndex returns a commit index that covers every write acknowledged before the call.
// A new leader's commit index may trail the cluster's until it commits an entry of its own
// term, so the first read of a term issues a barrier.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	if err := n.leaderReady(ctx); err != nil {
		return 0, err
	}
	idx := n.raft.CommitIndex()
	if err := waitFuture(ctx, n.raft.VerifyLeader()); err != nil {
		return 0, raftErr("read index: verify leader", err)
	}
	return idx, nil
}

// leaderReady makes sure this leader has committed an entry of its current term and applied
// everything before it (one raft barrier per term): its commit index is then the cluster's and
// its registry reflects every entry committed before the term began.
func (n *Node) leaderReady(ctx context.Context) error {
	term := n.raft.CurrentTerm()
	if n.readyTerm.Load() == term {
		return nil
	}
	if err := waitFuture(ctx, n.raft.Barrier(timeoutFrom(ctx, n.cfg.ApplyTimeout))); err != nil {
		return raftErr("barrier", err)
	}
	n.readyTerm.Store(term)
	return nil
}

func (n *Node) forwardReadIndex(ctx context.Context) (uint64, error) {
	leader, err := n.leaderPeer()
	if err != nil {
		return 0, err
	}
	body, sent, err := n.exchange(ctx, leader, ReadIndexProtocol, []byte{readIndexWire}, maxResultMsg)
	if err != nil {
		if !sent {
			return 0, fmt.Errorf("%w (%w)", err, errNotLeader)
		}
		return 0, fmt.Errorf("consensus: read index: %v: %w", err, ErrTimeout)
	}
	r, err := decodeResult(bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if err := r.Err(); err != nil {
		return 0, err
	}
	return r.Index, nil
}

func (n *Node) handleReadIndex(s network.Stream) {
	n.serve(s, 1, func(ctx context.Context, _ peer.ID, req []byte) []byte {
		if len(req) != 1 || req[0] != readIndexWire {
			return encodeResult(resultFor(0, errf(ErrProtocol, "read index: bad request")))
		}
		if !n.IsLeader() {
			return encodeResult(resultFor(0, errNotLeader))
		}
		idx, err := n.leaderReadIndex(ctx)
		return encodeResult(resultFor(idx, err))
	}, nil)
}

// handleJoin answers an admitted node with the admitted nodes and the leader (for a joining node,
// and for a lagging one refreshing its vouches, catchup.go). A peer that is not admitted (yet)
// gets a not-admitted result, so a node started before its admission retries.
func (n *Node) handleJoin(s network.Stream) {
	refuse := func(err error) []byte { return encodeJoinResponse(joinResponse{Result: resultFor(0, err)}) }
	n.serve(s, 16, func(_ context.Context, _ peer.ID, req []byte) []byte {
		if len(req) != len(n.cluster) || !bytes.Equal(req, n.cluster[:]) {
			return refuse(fmt.Errorf("consensus: join: cluster %x is not %s: %w", req, n.cluster, identity.ErrWrongCluster))
		}
		return encodeJoinResponse(n.joinInfo())
	}, refuse)
}

// joinInfo lists the admitted nodes with their registered addresses, else the peerstore's, and
// sets Result.Index to the index that list reflects.
func (n *Node) joinInfo() joinResponse {
	var nodes []identity.Node
	var index uint64
	n.fsm.readIndexed(func(reg *identity.Registry, i uint64) { nodes, index = reg.Nodes(), i })
	j := joinResponse{Result: wireResult{Index: index}, Leader: n.Leader().String()}
	for _, nd := range nodes {
		p := nd.ID.Peer()
		addrs := nd.Addrs
		if len(addrs) == 0 {
			src := n.h.Peerstore().Addrs(p)
			if p == n.h.ID() {
				src = n.h.Addrs()
			}
			for _, a := range src {
				addrs = append(addrs, a.String())
			}
		}
		j.Nodes = append(j.Nodes, joinNode{ID: p.String(), Addrs: addrs})
	}
	return j
}

// joinLoop asks the join peers, in turn, until one answers; then the admitted nodes become the
// bootstrap set (trusted until this node's registry lists itself) and this node connects to the
// leader so the leader learns its addresses. The leader's reconciler adds it to raft.
func (n *Node) joinLoop() {
	backoff := 200 * time.Millisecond
	for {
		var listed bool
		n.fsm.Read(func(reg *identity.Registry) { _, listed = reg.Node(n.self) })
		if listed {
			n.joinProblem.Store(nil)
			return // already replicating: raft reached this node first
		}
		var problem error
		for _, ai := range n.cfg.Join {
			err := n.joinOnce(ai)
			if err == nil {
				n.joinProblem.Store(nil)
				return
			}
			n.log.Warn("consensus: join failed", "peer", ai.ID.String(), "err", err)
			problem = worseJoinProblem(problem, err)
		}
		n.joinProblem.Store(&problem)
		t := time.NewTimer(backoff)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// worseJoinProblem keeps the more telling of two join failures: a refusal (this node is not
// admitted) over an unreachable peer over anything else.
func worseJoinProblem(a, b error) error {
	rank := func(err error) int {
		switch {
		case err == nil:
			return 0
		case errors.Is(err, ErrNotAdmitted):
			return 3
		case errors.Is(err, ErrUnreachable):
			return 2
		}
		return 1
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// notAdmitted is the join failure of a peer that refused this node: its gater closed the
// connection right after the handshake, or it answered not-admitted.
func (n *Node) notAdmitted(ai peer.AddrInfo, how string) error {
	msg := fmt.Sprintf("join peer %s %s: this node (ID %s) is not admitted by the cluster, or the join address names a node of another cluster",
		ai.ID, how, n.self)
	if n.cfg.AdmitHint != "" {
		msg += ": " + n.cfg.AdmitHint
	}
	return errf(ErrNotAdmitted, "%s", msg)
}

// refusedAfterHandshake reports whether the connection to p is gone: the peer's gater refuses
// a key it does not admit by closing the connection once the handshake proved the key, which the
// dialling side sees as a stream that fails to open or is reset.
func (n *Node) refusedAfterHandshake(p peer.ID) bool {
	return n.h.Network().Connectedness(p) != network.Connected
}

func (n *Node) joinOnce(ai peer.AddrInfo) error {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RPCTimeout)
	defer cancel()
	if err := n.h.Connect(ctx, ai); err != nil {
		if strings.Contains(err.Error(), "peer id mismatch") {
			return errf(ErrUnreachable, "join address %v answers with another peer ID than %s: fix the /p2p/ part of the join address: %v", ai.Addrs, ai.ID, err)
		}
		return errf(ErrUnreachable, "cannot reach join peer %s at %v: check the join addresses and that the peer runs: %v", ai.ID, ai.Addrs, err)
	}
	s, err := n.h.NewStream(ctx, ai.ID, JoinProtocol)
	if err != nil {
		if n.ctx.Err() == nil && n.refusedAfterHandshake(ai.ID) {
			return n.notAdmitted(ai, "closed the connection after the handshake")
		}
		return fmt.Errorf("consensus: join: open stream to %s: %w", ai.ID, err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(n.cfg.RPCTimeout))
	if _, err := s.Write(n.cluster[:]); err != nil {
		_ = s.Reset()
		return fmt.Errorf("consensus: join: %w", err)
	}
	_ = s.CloseWrite()
	body, err := io.ReadAll(io.LimitReader(s, maxJoinMsg+1))
	if err != nil || len(body) > maxJoinMsg {
		_ = s.Reset()
		if err != nil && n.ctx.Err() == nil && n.refusedAfterHandshake(ai.ID) {
			return n.notAdmitted(ai, "closed the connection after the handshake")
		}
		return errf(ErrProtocol, "join: read response from %s: %v", ai.ID, err)
	}
	j, err := decodeJoinResponse(bytes.NewReader(body))
	if err != nil {
		return err
	}
	if err := j.Result.Err(); err != nil {
		if errors.Is(err, ErrNotAdmitted) {
			return n.notAdmitted(ai, "answered that it does not admit this node")
		}
		return err
	}
	learnt := 0
	n.bootMu.Lock()
	for _, jn := range j.Nodes {
		p, err := peer.Decode(jn.ID)
		if err != nil || p == n.h.ID() {
			continue
		}
		n.boot[p] = struct{}{}
		learnt++
		for _, s := range jn.Addrs {
			if a, err := multiaddr.NewMultiaddr(s); err == nil {
				n.h.Peerstore().AddAddrs(p, []multiaddr.Multiaddr{a}, peerstore.AddressTTL)
			}
		}
	}
	n.bootMu.Unlock()
	if leader, err := peer.Decode(j.Leader); err == nil && leader != n.h.ID() {
		if err := n.h.Connect(ctx, peer.AddrInfo{ID: leader, Addrs: n.h.Peerstore().Addrs(leader)}); err != nil {
			n.log.Warn("consensus: join: connect to leader", "leader", leader.String(), "err", err)
		}
	}
	n.log.Info("consensus: joined", "via", ai.ID.String(), "nodes", learnt, "leader", j.Leader)
	return nil
}
