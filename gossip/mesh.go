package gossip

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vigil-mesh/vigil/identity"
)

// Counter names a receive-path outcome; see Mesh.Stats.
type Counter int

const (
	CountReceived     Counter = iota // payloads that reached the receive path
	CountDelivered                   // handed to OnSignal / OnRevocation
	CountTooLarge                    // over MaxEnvelopeSize, refused before decoding
	CountMalformed                   // did not decode (envelope or inner payload)
	CountNotAdmitted                 // reporter is not an admitted node
	CountOutOfWindow                 // expired, from the future, or TTL over MaxMessageTTL
	CountBadSignature                // envelope or inner signature failed
	CountMismatch                    // envelope and inner payload disagree (reporter, nonce, cluster, kind)
	CountDuplicate                   // already seen (replay or relay copy)
	CountRateLimited                 // reporter over its token bucket
	CountDeliveryFull                // delivery queue full
	CountRefusedAlive                // alive messages refused (unadmitted node or bad metadata)
	CountRefusedMerge                // push/pull merges refused
	CountSent                        // payloads this node originated
	CountEvicted                     // members evicted because the registry no longer admits them
	countEnd
)

var counterNames = [...]string{"received", "delivered", "too_large", "malformed", "not_admitted",
	"out_of_window", "bad_signature", "mismatch", "duplicate", "rate_limited", "delivery_full",
	"refused_alive", "refused_merge", "sent", "evicted"}

func (c Counter) String() string { return counterNames[c] }

// Member is one live node of the mesh with its verified metadata.
type Member struct {
	ID    identity.ID
	Addr  string // memberlist address host:port
	Site  string
	Role  string
	Addrs []string // libp2p multiaddrs
}

// Mesh is this node's membership in the gossip mesh. Its methods are safe for concurrent use.
type Mesh struct {
	cfg   Config
	meta  []byte
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	self  identity.ID

	mu      sync.Mutex // guards replay, buckets and rng
	replay  *replayCache
	buckets map[identity.ID]*bucket
	rng     *rand.Rand

	counts  [countEnd]atomic.Uint64
	deliver chan delivery
	relay   chan []byte // large payloads waiting to be relayed over TCP
	done    chan struct{}
	wg      sync.WaitGroup
	closed  atomic.Bool
	maxUDP  int
	recent  []recentRev // revocations still valid, for anti-entropy (guarded by mu)
	keyring *memberlist.Keyring
	evict   *evictTransport
	states  *stateTracker // departed members, for MemberStates

	rotateMu sync.Mutex // serialises keyring operations (the file and memberlist's keyring change together)
}

// recentRev is a revocation envelope kept for push/pull anti-entropy until it expires.
type recentRev struct {
	raw []byte
	exp time.Time
}

// Anti-entropy bounds: memberlist's push/pull carries the revocations a node still holds, so a
// node that missed one by gossip (loss, a partition, a restart) gets it at the next push/pull
// (every 15 s local, 30 s LAN, 60 s WAN) or when it joins.
const (
	maxStateRevocations = 64
	maxStateBytes       = 256 << 10
	// maxQueued bounds the broadcast queue: past it the payloads sent most often are dropped
	// (memberlist's TransmitLimitedQueue.Prune), so a node that publishes or relays faster
	// than gossip drains keeps bounded memory.
	maxQueued = 4096
)

type delivery struct {
	sig  *identity.Signal
	cmd  []byte
	from identity.ID
}

// Start validates cfg, creates the memberlist node and starts listening. It joins no one: call
// Join.
func Start(cfg Config) (*Mesh, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	meta, err := signMeta(cfg.ClusterID, cfg.Key, cfg.Site, cfg.Role, cfg.Addrs)
	if err != nil {
		return nil, err
	}
	var seed [32]byte
	if _, err := io.ReadFull(crand.Reader, seed[:]); err != nil {
		return nil, fmt.Errorf("gossip: seed: %w", err)
	}
	m := &Mesh{
		cfg:     cfg,
		meta:    meta.Encode(),
		self:    cfg.Key.ID(),
		replay:  newReplayCache(cfg.DedupeCapacity),
		buckets: make(map[identity.ID]*bucket),
		rng:     rand.New(rand.NewChaCha8(seed)),
		deliver: make(chan delivery, cfg.DeliveryQueue),
		relay:   make(chan []byte, 64),
		done:    make(chan struct{}),
	}
	mc := cfg.memberlistConfig()
	mc.Delegate = (*delegate)(m)
	mc.Alive = (*delegate)(m)
	mc.Merge = (*delegate)(m)
	m.states = &stateTracker{cid: cfg.ClusterID}
	mc.Events, mc.Ping = m.states, m.states
	mc.Logger = log.New(slogWriter{cfg.Logger, m.states}, "", 0)
	if len(cfg.Keyring) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keyring, cfg.Keyring[0])
		if err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
		mc.Keyring, m.keyring = kr, kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	// Room for one user message in a gossip packet: the UDP buffer less memberlist's compound,
	// label and encryption overheads (generously rounded).
	m.maxUDP = mc.UDPBufferSize - 120
	m.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return m.numMembers() },
		RetransmitMult: cfg.RetransmitMult,
	}
	inner := cfg.Transport
	if inner == nil {
		nt, port, err := netTransport(cfg.BindAddr, cfg.BindPort, mc.Logger)
		if err != nil {
			return nil, err
		}
		if mc.BindPort == 0 {
			mc.BindPort = port
		}
		if cfg.AdvertisePort == 0 {
			mc.AdvertisePort = port
		}
		inner = nt
	}
	m.evict = newEvictTransport(inner)
	mc.Transport = m.evict
	ml, err := memberlist.Create(mc)
	if err != nil {
		m.evict.Shutdown()
		return nil, fmt.Errorf("gossip: start memberlist on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	m.ml = ml
	m.wg.Add(3)
	go m.deliverLoop()
	go m.relayLoop()
	go m.evictLoop(mc.ProbeInterval)
	return m, nil
}

func (m *Mesh) numMembers() int {
	if m.ml == nil {
		return 1
	}
	return m.ml.NumMembers()
}

// ID returns this node's ID (its memberlist name is ID().String()).
func (m *Mesh) ID() identity.ID { return m.self }

// Addr returns the address other nodes join at (host:port).
func (m *Mesh) Addr() string {
	if n, ok := m.states.liveNode(m.self.String()); ok {
		return n.FullAddress().Addr
	}
	return m.ml.LocalNode().FullAddress().Addr // before memberlist announced this node alive
}

// Join contacts the given addresses ("host:port") and returns how many answered. Nodes that the
// registry has not admitted, or whose metadata does not verify, are refused.
func (m *Mesh) Join(addrs []string) (int, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	n, err := m.ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("gossip: join: %w", err)
	}
	return n, nil
}

// Members returns the live members other than this node, with their verified metadata.
func (m *Mesh) Members() []Member {
	var out []Member
	self := m.self.String()
	for _, n := range m.states.liveNodes() {
		if n.Name == self {
			continue
		}
		id, err := identity.ParseID(n.Name)
		if err != nil {
			continue
		}
		md, err := verifyMeta(m.cfg.ClusterID, id, n.Meta)
		if err != nil {
			continue
		}
		out = append(out, Member{ID: id, Addr: n.FullAddress().Addr, Site: md.Site, Role: md.Role, Addrs: md.Addrs})
	}
	return out
}

// NumMembers returns the number of live members, this node included.
func (m *Mesh) NumMembers() int { return m.ml.NumMembers() }

// Keyring returns memberlist's keyring for rotation: AddKey the new key on every node, then
// UseKey it, then RemoveKey the old one (see docs/gossip.md). nil when running in plaintext.
func (m *Mesh) Keyring() *memberlist.Keyring { return m.keyring }

// Stats returns the receive-path counters.
func (m *Mesh) Stats() map[Counter]uint64 {
	out := make(map[Counter]uint64, countEnd)
	for i := range countEnd {
		out[i] = m.counts[i].Load()
	}
	return out
}

// Count returns one counter.
func (m *Mesh) Count(c Counter) uint64 { return m.counts[c].Load() }

// ReplayEntries returns how many payload keys the replay cache holds (bounded by
// DedupeCapacity).
func (m *Mesh) ReplayEntries() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.replay.len()
}

// PublishSignal gossips s, which must be signed by this node's key (identity.Signal.Sign).
func (m *Mesh) PublishSignal(s identity.Signal) error {
	if s.Reporter != m.cfg.Key.Public() {
		return errf(ErrMismatch, "signal reporter %s is not this node %s", s.Reporter.ID(), m.self)
	}
	if s.ClusterID != m.cfg.ClusterID {
		return errf(ErrMismatch, "signal for cluster %s, this is %s", s.ClusterID, m.cfg.ClusterID)
	}
	if err := s.Verify(); err != nil {
		return fmt.Errorf("gossip: publish signal: %w", err)
	}
	now := m.cfg.Now()
	e := &Envelope{Type: MsgSignal, Nonce: s.Nonce, IssuedAt: now, Expires: now.Add(m.cfg.SignalTTL), Body: s.Encode()}
	return m.publish(e, signalKey(&s))
}

// PublishRevocation gossips a committed revocation command (its canonical bytes). Publishing
// the same command twice, or one this node already received by gossip, sends nothing.
func (m *Mesh) PublishRevocation(cmd []byte) error {
	if _, err := checkRevocation(m.cfg.ClusterID, cmd); err != nil {
		return err
	}
	now := m.cfg.Now()
	e := &Envelope{Type: MsgRevocation, IssuedAt: now, Expires: now.Add(m.cfg.RevocationTTL), Body: bytes.Clone(cmd)}
	if _, err := io.ReadFull(crand.Reader, e.Nonce[:]); err != nil {
		return fmt.Errorf("gossip: nonce: %w", err)
	}
	return m.publish(e, revocationKey(cmd))
}

func (m *Mesh) publish(e *Envelope, key dedupeKey) error {
	if m.closed.Load() {
		return ErrClosed
	}
	e.sign(m.cfg.ClusterID, m.cfg.Key)
	raw := e.Encode()
	m.mu.Lock()
	if m.replay.seen(key, m.cfg.Now()) {
		m.mu.Unlock()
		return nil
	}
	m.replay.add(key, e.Expires, m.cfg.Now())
	if e.Type == MsgRevocation {
		m.rememberLocked(raw, e.Expires)
	}
	m.mu.Unlock()
	m.counts[CountSent].Add(1)
	if len(raw) <= m.maxUDP {
		m.enqueue(raw)
		return nil
	}
	// Too large for a gossip packet: send it over TCP to every member; they relay it further.
	for _, n := range m.states.liveNodes() {
		if n.Name != m.self.String() {
			if err := m.ml.SendReliable(n, raw); err != nil {
				m.cfg.Logger.Debug("gossip: reliable send failed", "to", n.Name, "err", err)
			}
		}
	}
	return nil
}

// checkRevocation decodes and verifies a revocation command without registry state: cluster,
// kind, signatures.
func checkRevocation(cluster identity.ClusterID, cmd []byte) (*identity.VerifiedCommand, error) {
	c, err := identity.DecodeCommand(cmd)
	if err != nil {
		return nil, errf(ErrMalformed, "revocation: %v", err)
	}
	if c.Kind != identity.KindRevokeAgent && c.Kind != identity.KindAutoRevokeAgent {
		return nil, errf(ErrMismatch, "revocation: a %s command is not a revocation", c.Kind)
	}
	if c.ClusterID != cluster {
		return nil, errf(ErrMismatch, "revocation: for cluster %s, this is %s", c.ClusterID, cluster)
	}
	v, err := c.Verify()
	if err != nil {
		return nil, errf(ErrBadSignature, "revocation: %v", err)
	}
	return v, nil
}

// receive is the whole receive path, in order: size cap, decode, admitted reporter, window,
// envelope signature, inner payload, dedupe, token bucket; then relay and deliver.
func (m *Mesh) receive(b []byte) {
	m.counts[CountReceived].Add(1)
	if len(b) > MaxEnvelopeSize {
		m.counts[CountTooLarge].Add(1)
		return
	}
	e, err := DecodeEnvelope(b)
	if err != nil {
		m.count(err)
		return
	}
	reporter := e.Reporter.ID()
	if reporter == m.self {
		m.counts[CountDuplicate].Add(1) // our own payload coming back
		return
	}
	if !m.cfg.Admission.Admitted(reporter) {
		m.counts[CountNotAdmitted].Add(1)
		return
	}
	now := m.cfg.Now()
	if e.IssuedAt.After(now.Add(m.cfg.MaxClockSkew)) || !e.Expires.After(now) ||
		e.Expires.Sub(e.IssuedAt) > m.cfg.MaxMessageTTL || e.Expires.Before(e.IssuedAt) {
		m.counts[CountOutOfWindow].Add(1)
		return
	}
	if err := e.verify(m.cfg.ClusterID); err != nil {
		m.counts[CountBadSignature].Add(1)
		return
	}
	var (
		key dedupeKey
		d   = delivery{from: reporter}
	)
	switch e.Type {
	case MsgSignal:
		s, err := identity.DecodeSignal(e.Body)
		if err != nil {
			m.counts[CountMalformed].Add(1)
			return
		}
		if s.Reporter != e.Reporter || s.Nonce != e.Nonce || s.ClusterID != m.cfg.ClusterID {
			m.counts[CountMismatch].Add(1)
			return
		}
		if err := s.Verify(); err != nil {
			m.counts[CountBadSignature].Add(1)
			return
		}
		key, d.sig = signalKey(s), s
	case MsgRevocation:
		if _, err := checkRevocation(m.cfg.ClusterID, e.Body); err != nil {
			m.count(err)
			return
		}
		key, d.cmd = revocationKey(e.Body), e.Body
	}
	m.mu.Lock()
	if m.replay.seen(key, now) {
		m.mu.Unlock()
		m.counts[CountDuplicate].Add(1)
		return
	}
	bk := m.buckets[reporter]
	if bk == nil {
		bk = &bucket{}
		m.buckets[reporter] = bk
	}
	if !bk.allow(now, m.cfg.Rate, m.cfg.Burst) {
		m.mu.Unlock()
		m.counts[CountRateLimited].Add(1)
		return
	}
	m.replay.add(key, e.Expires, now)
	raw := bytes.Clone(b)
	if e.Type == MsgRevocation {
		m.rememberLocked(raw, e.Expires)
	}
	m.mu.Unlock()

	if len(raw) <= m.maxUDP {
		m.enqueue(raw) // epidemic: every node relays what is new to it
	} else {
		select {
		case m.relay <- raw:
		default:
		}
	}
	select {
	case m.deliver <- d:
	default:
		m.counts[CountDeliveryFull].Add(1)
	}
}

func (m *Mesh) enqueue(raw []byte) {
	m.queue.QueueBroadcast(broadcast(raw))
	if m.queue.NumQueued() > maxQueued {
		m.queue.Prune(maxQueued)
	}
}

// QueuedBroadcasts returns how many payloads wait in the gossip queue (at most 4096).
func (m *Mesh) QueuedBroadcasts() int { return m.queue.NumQueued() }

// rememberLocked keeps a revocation envelope for anti-entropy, dropping expired ones and, past
// the bounds, the oldest.
func (m *Mesh) rememberLocked(raw []byte, exp time.Time) {
	now := m.cfg.Now()
	keep := m.recent[:0]
	for _, r := range m.recent {
		if r.exp.After(now) {
			keep = append(keep, r)
		}
	}
	m.recent = append(keep, recentRev{raw, exp})
	for len(m.recent) > maxStateRevocations || m.stateSizeLocked() > maxStateBytes {
		m.recent = m.recent[1:]
	}
}

func (m *Mesh) stateSizeLocked() int {
	n := 0
	for _, r := range m.recent {
		n += len(r.raw) + binary.MaxVarintLen32
	}
	return n
}

// localState encodes the revocations still valid: uvarint length, envelope, repeated.
func (m *Mesh) localState() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	var b []byte
	for _, r := range m.recent {
		if r.exp.After(now) {
			b = binary.AppendUvarint(b, uint64(len(r.raw)))
			b = append(b, r.raw...)
		}
	}
	return b
}

// mergeState feeds another node's revocations through the normal receive path (so each is
// verified, deduplicated and rate-limited like any other payload).
func (m *Mesh) mergeState(b []byte) {
	if len(b) > maxStateBytes {
		m.counts[CountTooLarge].Add(1)
		return
	}
	for i := 0; len(b) > 0 && i < maxStateRevocations; i++ {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			m.counts[CountMalformed].Add(1)
			return
		}
		m.receive(b[w : w+int(n)])
		b = b[w+int(n):]
	}
}

func (m *Mesh) count(err error) {
	switch {
	case isErr(err, ErrTooLarge):
		m.counts[CountTooLarge].Add(1)
	case isErr(err, ErrBadSignature):
		m.counts[CountBadSignature].Add(1)
	case isErr(err, ErrMismatch):
		m.counts[CountMismatch].Add(1)
	default:
		m.counts[CountMalformed].Add(1)
	}
}

func (m *Mesh) deliverLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case d := <-m.deliver:
			m.counts[CountDelivered].Add(1)
			switch {
			case d.sig != nil && m.cfg.OnSignal != nil:
				m.cfg.OnSignal(*d.sig)
			case d.cmd != nil && m.cfg.OnRevocation != nil:
				m.cfg.OnRevocation(d.cmd, d.from)
			}
		}
	}
}

// relayLoop sends payloads too large for a gossip packet to RelayFanout random members.
func (m *Mesh) relayLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case raw := <-m.relay:
			members := m.states.liveNodes()
			m.mu.Lock()
			m.rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
			m.mu.Unlock()
			sent := 0
			for _, n := range members {
				if sent == m.cfg.RelayFanout {
					break
				}
				if n.Name == m.self.String() {
					continue
				}
				if err := m.ml.SendReliable(n, raw); err == nil {
					sent++
				}
			}
		}
	}
}

// Leave tells the other members this node is leaving, waiting at most timeout.
func (m *Mesh) Leave(timeout time.Duration) error {
	if err := m.ml.Leave(timeout); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// Close stops the mesh without announcing it (others detect the failure); call Leave first for
// a graceful exit. Idempotent; no goroutine of the mesh is left behind.
func (m *Mesh) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	// Stop our own loops first: they call into memberlist (LocalNode, Members), which must
	// not happen after its Shutdown.
	close(m.done)
	m.wg.Wait()
	err := m.ml.Shutdown()
	if err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

// broadcast is one queued payload; payloads never invalidate each other.
type broadcast []byte

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}
func (b broadcast) UniqueBroadcast()                      {}

// delegate implements memberlist's Delegate, AliveDelegate and MergeDelegate for a Mesh.
type delegate Mesh

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.AliveDelegate = (*delegate)(nil)
	_ memberlist.MergeDelegate = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return nil
	}
	return d.meta
}

// NotifyMsg copies nothing it keeps: receive decodes into fresh slices and clones what it
// queues.
func (d *delegate) NotifyMsg(b []byte) { (*Mesh)(d).receive(b) }

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(bool) []byte                 { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// checkNode refuses a node the registry has not admitted or whose metadata does not verify.
func (d *delegate) checkNode(n *memberlist.Node) error {
	if n.Name == d.self.String() {
		return nil
	}
	id, err := identity.ParseID(n.Name)
	if err != nil {
		return errf(ErrNotAdmitted, "member name %q is not a node ID", truncate(n.Name))
	}
	if !d.cfg.Admission.Admitted(id) {
		return errf(ErrNotAdmitted, "member %s", id)
	}
	if _, err := verifyMeta(d.cfg.ClusterID, id, n.Meta); err != nil {
		return err
	}
	return nil
}

func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	if err := d.checkNode(n); err != nil {
		d.counts[CountRefusedAlive].Add(1)
		return err
	}
	return nil
}

func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if err := d.checkNode(n); err != nil {
			d.counts[CountRefusedMerge].Add(1)
			return err
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// slogWriter adapts memberlist's *log.Logger lines ("[DEBUG] memberlist: …") to slog.
type slogWriter struct {
	l      *slog.Logger
	states *stateTracker // reads this node's suspicions from the lines
}

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if w.states != nil {
		w.states.noteLog(line)
	}
	level := slog.LevelInfo
	switch {
	case strings.HasPrefix(line, "[DEBUG]"):
		level = slog.LevelDebug
	case strings.HasPrefix(line, "[WARN]"):
		level = slog.LevelWarn
	case strings.HasPrefix(line, "[ERR]"):
		level = slog.LevelError
	}
	w.l.Log(context.Background(), level, "memberlist", "line", line)
	return len(p), nil
}
