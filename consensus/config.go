package consensus

import (
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// Config configures one registry node. Zero values are not defaults: start from DefaultConfig().
type Config struct {
	// DataDir is the node's data directory (DESIGN.md §8). Open creates raft/, snapshots/,
	// state/ and keys/ in it (mode 0700) and records the cluster id and node id on first start.
	// Required.
	DataDir string

	// Key is the node key. Its ID must be the ID of Host. Required.
	Key identity.PrivateKey

	// Host is the libp2p host the node speaks on. Owned by the caller: Close does not close it.
	// Required.
	Host host.Host

	// Genesis is the signed genesis command of the cluster. Every node is given it: it names
	// the cluster (checked against DataDir) and the first nodes. Required.
	Genesis *identity.Command

	// Bootstrap makes this the first node: on an empty data dir it bootstraps a one-voter raft
	// configuration and proposes Genesis once it leads. Default false.
	Bootstrap bool

	// Join lists peers to ask for the admitted nodes when this node starts with an empty data
	// dir (and Bootstrap is false). Default empty.
	Join []peer.AddrInfo

	// AdmitHint is appended to a join failure that means this node is not admitted, to tell the
	// operator what to run (e.g. the `vigil members admit …` command for this node). Default "".
	AdmitHint string

	// Logger receives the node's structured logs (and raft's, through an hclog adapter).
	// Default slog.Default().
	Logger *slog.Logger

	// HeartbeatTimeout is how long a follower waits without contact before it starts an
	// election. Default 1 s (raft's default).
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits before a new election. Default 1 s.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without reaching a quorum.
	// Must be at most HeartbeatTimeout. Default 500 ms.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is how long the leader waits before it sends an empty append (heartbeat with
	// the commit index) when there is nothing else to send. Small so followers learn commits
	// fast (revocations). Default 5 ms.
	CommitTimeout time.Duration
	// SnapshotThreshold is the number of log entries since the last snapshot that triggers a
	// new one. Default 8192.
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks whether to snapshot. Default 2 min.
	SnapshotInterval time.Duration
	// TrailingLogs is the number of log entries kept after a snapshot so that slightly lagging
	// followers catch up without a snapshot install. Default 10240.
	TrailingLogs uint64

	// ApplyTimeout bounds a proposal when the caller's context has no deadline. Default 10 s.
	ApplyTimeout time.Duration
	// RPCTimeout bounds one propose, read-index or join exchange with a peer (on both ends).
	// Default 10 s.
	RPCTimeout time.Duration

	// Transport overrides the raft transport. nil = raft over libp2p streams on Host
	// (/vigil/raft/1), authorised by the registry. An override is not authorised by this
	// package (the caller's transport must do it) and removed nodes' streams are not dropped.
	Transport raft.Transport
	// LogStore and StableStore override the raft stores. nil = a Badger store (SyncWrites on)
	// in DataDir/raft. Both or neither.
	LogStore    raft.LogStore
	StableStore raft.StableStore
	// SnapshotStore overrides the snapshot store. nil = raft.NewFileSnapshotStore in
	// DataDir/snapshots, keeping SnapshotRetain snapshots.
	SnapshotStore raft.SnapshotStore
	// SnapshotRetain is how many file snapshots are kept. Default 2.
	SnapshotRetain int
}

// DefaultConfig returns the defaults documented on Config; the caller fills DataDir, Key, Host,
// Genesis and, as needed, Bootstrap or Join.
func DefaultConfig() Config {
	return Config{
		Logger:             slog.Default(),
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   2 * time.Minute,
		TrailingLogs:       10240,
		ApplyTimeout:       10 * time.Second,
		RPCTimeout:         10 * time.Second,
		SnapshotRetain:     2,
	}
}

// Validate checks every field and the cross-field rules.
func (c Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errf(ErrInvalidConfig, "data_dir: required")
	case c.Key.ID().IsZero():
		return errf(ErrInvalidConfig, "key: required")
	case c.Host == nil:
		return errf(ErrInvalidConfig, "host: required")
	case c.Host.ID() != c.Key.ID().Peer():
		return errf(ErrInvalidConfig, "key: node key %s is not the key of host %s", c.Key.ID(), c.Host.ID())
	case c.Genesis == nil:
		return errf(ErrInvalidConfig, "genesis: required")
	case c.Genesis.Kind != identity.KindGenesis:
		return errf(ErrInvalidConfig, "genesis: command kind is %s", c.Genesis.Kind)
	case c.Bootstrap && len(c.Join) > 0:
		return errf(ErrInvalidConfig, "join: a bootstrap node joins no one")
	case c.Logger == nil:
		return errf(ErrInvalidConfig, "logger: required")
	case c.HeartbeatTimeout < 5*time.Millisecond:
		return errf(ErrInvalidConfig, "heartbeat_timeout: %s is below 5ms", c.HeartbeatTimeout)
	case c.ElectionTimeout < 5*time.Millisecond:
		return errf(ErrInvalidConfig, "election_timeout: %s is below 5ms", c.ElectionTimeout)
	case c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return errf(ErrInvalidConfig, "leader_lease_timeout: %s must be in [5ms, heartbeat_timeout]", c.LeaderLeaseTimeout)
	case c.CommitTimeout <= 0:
		return errf(ErrInvalidConfig, "commit_timeout: must be positive")
	case c.SnapshotThreshold == 0:
		return errf(ErrInvalidConfig, "snapshot_threshold: must be positive")
	case c.SnapshotInterval < 5*time.Millisecond:
		return errf(ErrInvalidConfig, "snapshot_interval: %s is below 5ms", c.SnapshotInterval)
	case c.ApplyTimeout <= 0:
		return errf(ErrInvalidConfig, "apply_timeout: must be positive")
	case c.RPCTimeout <= 0:
		return errf(ErrInvalidConfig, "rpc_timeout: must be positive")
	case (c.LogStore == nil) != (c.StableStore == nil):
		return errf(ErrInvalidConfig, "log_store, stable_store: set both or neither")
	case c.SnapshotStore == nil && c.SnapshotRetain < 1:
		return errf(ErrInvalidConfig, "snapshot_retain: must be at least 1")
	}
	return nil
}
