package config

import (
	"path/filepath"
	"time"
)

// Config is the node configuration file (node.yaml). Every field maps to a snake_case YAML key;
// the key path in messages is the yaml tags joined by dots (auth.max_staleness). Zero values
// are not defaults: start from DefaultConfig() (Load does).
type Config struct {
	Node   Node   `yaml:"node"`
	Listen Listen `yaml:"listen"`
	// Advertise lists the libp2p multiaddrs (without /p2p) other nodes and agents should dial
	// this node at, for when the listen addresses are not reachable as such (NAT, 0.0.0.0,
	// containers). Default empty: libp2p advertises the addresses it observes.
	Advertise []string `yaml:"advertise"`
	// Join lists libp2p multiaddrs of admitted nodes, each ending in /p2p/<peer id>, that a node
	// starting on an empty data directory asks for the cluster. The peer ID is required: the
	// joining node authenticates whom it talks to. Default empty (a node created by vigil init,
	// or one restarting on an existing data directory, joins no one).
	Join []string `yaml:"join"`
	Raft Raft     `yaml:"raft"`
	Auth Auth     `yaml:"auth"`
	// Genesis is the file holding the cluster's signed genesis command (Command.Encode()).
	// A relative path is relative to node.data_dir. Default <data_dir>/genesis.bin.
	Genesis string `yaml:"genesis"`
	Log     Log    `yaml:"log"`
	Agents  Agents `yaml:"agents"`
	Gossip  Gossip `yaml:"gossip"`
}

// Agents tunes agent messaging and telemetry on this node (docs/agents.md).
type Agents struct {
	// MaxMessageBytes caps one message body, 1 to 65536 bytes. Default 65536.
	MaxMessageBytes uint64 `yaml:"max_message_bytes"`
	// TelemetryRecords is how many telemetry records (messages, refusals, events) the node keeps
	// in memory, about 160–250 bytes each; older ones are overwritten. 1 to 10,000,000. Default 100000.
	TelemetryRecords uint64 `yaml:"telemetry_records"`
}

// Gossip is the node's membership in the gossip mesh (hashicorp/memberlist, package gossip):
// signed anomaly signals, and committed revocations that reach a site cut off from the Raft
// leader.
type Gossip struct {
	// Enabled joins the mesh. Default false until every node of the cluster has a keyring and
	// its own gossip port (several nodes on one host need distinct binds).
	Enabled bool `yaml:"enabled"`
	// Bind is the host:port memberlist listens on, TCP and UDP. Port 0 picks a free port.
	// Default 0.0.0.0:7946.
	Bind string `yaml:"bind"`
	// Advertise is the host:port other nodes reach this node at, when Bind is not reachable as
	// such (NAT, containers, 0.0.0.0). The host must be an IP address. Default empty.
	Advertise string `yaml:"advertise"`
	// Profile is memberlist's timing preset: lan (probe 1s, gossip 200ms), wan (probe 5s,
	// gossip 500ms) or local (one host, tests). Default lan.
	Profile string `yaml:"profile"`
	// Keyring is the file holding the mesh's AES keys, one base64 key per line, the first one
	// primary (gossip.WriteKeyring writes it). A relative path is relative to node.data_dir.
	// Empty: gossip travels unencrypted (payloads are still signed). Default
	// keys/gossip.keyring.
	Keyring string `yaml:"keyring"`
	// Join lists host:port gossip addresses of other nodes to join at start. Default empty.
	Join []string `yaml:"join"`
}

// Gossip profiles.
const (
	GossipLAN   = "lan"
	GossipWAN   = "wan"
	GossipLocal = "local"
)

// Node names this node.
type Node struct {
	// Name is the node's name in the registry, [a-z0-9][a-z0-9._-]{0,62}
	// (identity.ValidateName). Unique in the cluster. Default "node-1".
	Name string `yaml:"name"`
	// Site is the site (location, vehicle, factory) the node runs at; same alphabet as Name.
	// Default "site-1".
	Site string `yaml:"site"`
	// DataDir is the node's data directory (raft/, snapshots/, state/, keys/). A relative path
	// is relative to the directory holding the configuration file. Default /var/lib/vigil.
	DataDir string `yaml:"data_dir"`
}

// Listen holds the addresses the node listens on.
type Listen struct {
	// Libp2p lists the libp2p multiaddrs (without /p2p) for agents and nodes. Port 0 picks a
	// free port (tests). Default /ip4/0.0.0.0/tcp/7400 and /ip4/0.0.0.0/udp/7400/quic-v1.
	Libp2p []string `yaml:"libp2p"`
	// Admin is the host:port of the admin API (connect-go, mutual TLS). Default 0.0.0.0:7401.
	Admin string `yaml:"admin"`
	// AdminSocket is the Unix socket of the admin API for operators on the host. A relative
	// path is relative to node.data_dir. Default <data_dir>/admin.sock.
	AdminSocket string `yaml:"admin_socket"`
	// HTTP is the host:port of /metrics, /healthz, /readyz and /decisions.
	// Default 127.0.0.1:7402 (loopback only: it is not authenticated).
	HTTP string `yaml:"http"`
}

// Raft tunes this node's replica of the registry (package consensus).
type Raft struct {
	// Voter asks for a voting seat when the node is admitted. Keep 3 or 5 voters spread over
	// sites; every other node replicates as a non-voter. Default false.
	Voter bool `yaml:"voter"`
	// HeartbeatTimeout is how long a follower waits without contact before it starts an
	// election. At least 5ms. Default 1s.
	HeartbeatTimeout time.Duration `yaml:"heartbeat_timeout"`
	// ElectionTimeout is how long a candidate waits before a new election. At least 5ms.
	// Default 1s.
	ElectionTimeout time.Duration `yaml:"election_timeout"`
	// CommitTimeout is how long the leader waits before it tells followers a new commit index
	// when nothing else is sent; small so revocations reach every node fast. Positive.
	// Default 5ms.
	CommitTimeout time.Duration `yaml:"commit_timeout"`
	// SnapshotThreshold is the number of log entries since the last snapshot that triggers a
	// new one. Positive. Default 8192.
	SnapshotThreshold uint64 `yaml:"snapshot_threshold"`
}

// Auth is how this node authenticates peers and enforces the registry.
type Auth struct {
	// Method is the libp2p security transport: mutual_tls (TLS 1.3) or noise. Either way every
	// peer is authenticated by its own Ed25519 key. Default mutual_tls.
	Method string `yaml:"method"`
	// Key is the node's private key file (vigil keygen --role node). A relative path is relative
	// to node.data_dir. Default <data_dir>/keys/node.key.
	Key string `yaml:"key"`
	// Enforcement is what the node does when its registry view is stale (no contact with the
	// leader): best_effort keeps enforcing the last known state; strict refuses new sessions
	// once the view is older than MaxStaleness. Default best_effort.
	Enforcement string `yaml:"enforcement"`
	// MaxStaleness is the registry view age beyond which strict enforcement refuses new
	// sessions. Must be positive with strict; 0 is allowed with best_effort. Default 30s.
	MaxStaleness time.Duration `yaml:"max_staleness"`
	// ReverifyInterval is how often each connected agent must sign a fresh nonce. At least 1s.
	// Default 5m.
	ReverifyInterval time.Duration `yaml:"reverify_interval"`
}

// Log configures the node's log/slog output (stderr).
type Log struct {
	// Level is the lowest level logged: debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or text. Default json.
	Format string `yaml:"format"`
}

// Values of the enumerated fields.
const (
	MethodMutualTLS = "mutual_tls"
	MethodNoise     = "noise"

	EnforcementBestEffort = "best_effort"
	EnforcementStrict     = "strict"
)

// DefaultDataDir is node.data_dir when the file does not set it.
const DefaultDataDir = "/var/lib/vigil"

// DefaultConfig returns the defaults documented on Config, with the data-directory paths
// resolved against DefaultDataDir. It is valid: Validate() returns nil.
func DefaultConfig() Config {
	return defaultUnresolved().resolve(".")
}

// defaultUnresolved holds the defaults with data-directory paths still relative, so that a file
// setting only node.data_dir moves the key, socket and genesis with it.
func defaultUnresolved() Config {
	return Config{
		Node: Node{Name: "node-1", Site: "site-1", DataDir: DefaultDataDir},
		Listen: Listen{
			Libp2p:      []string{"/ip4/0.0.0.0/tcp/7400", "/ip4/0.0.0.0/udp/7400/quic-v1"},
			Admin:       "0.0.0.0:7401",
			AdminSocket: "admin.sock",
			HTTP:        "127.0.0.1:7402",
		},
		Raft: Raft{
			HeartbeatTimeout:  time.Second,
			ElectionTimeout:   time.Second,
			CommitTimeout:     5 * time.Millisecond,
			SnapshotThreshold: 8192,
		},
		Auth: Auth{
			Method:           MethodMutualTLS,
			Key:              filepath.Join("keys", "node.key"),
			Enforcement:      EnforcementBestEffort,
			MaxStaleness:     30 * time.Second,
			ReverifyInterval: 5 * time.Minute,
		},
		Genesis: "genesis.bin",
		Log:     Log{Level: "info", Format: "json"},
		Agents:  Agents{MaxMessageBytes: 64 << 10, TelemetryRecords: 100_000},
		Gossip: Gossip{Bind: "0.0.0.0:7946", Profile: GossipLAN,
			Keyring: filepath.Join("keys", "gossip.keyring")},
	}
}

// resolve makes node.data_dir absolute-or-as-given against fileDir, then the data-directory
// paths (auth.key, listen.admin_socket, genesis) against node.data_dir. Empty paths stay empty
// (Validate reports them).
func (c Config) resolve(fileDir string) Config {
	if c.Node.DataDir != "" && !filepath.IsAbs(c.Node.DataDir) {
		c.Node.DataDir = filepath.Join(fileDir, c.Node.DataDir)
	}
	in := func(p string) string {
		if p == "" || filepath.IsAbs(p) || c.Node.DataDir == "" {
			return p
		}
		return filepath.Join(c.Node.DataDir, p)
	}
	c.Auth.Key = in(c.Auth.Key)
	c.Listen.AdminSocket = in(c.Listen.AdminSocket)
	c.Genesis = in(c.Genesis)
	c.Gossip.Keyring = in(c.Gossip.Keyring)
	return c
}
