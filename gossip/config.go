package gossip

import (
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vigil-mesh/vigil/identity"
)

// Profile picks memberlist's timing preset.
type Profile string

const (
	// ProfileLAN: probe every 1 s, gossip to 3 nodes every 200 ms, suspicion ≥ 4 s
	// (memberlist.DefaultLANConfig). For nodes on one site.
	ProfileLAN Profile = "lan"
	// ProfileWAN: probe every 5 s, gossip every 500 ms, suspicion multiplier 6
	// (memberlist.DefaultWANConfig). For sites joined over the internet or cellular links.
	ProfileWAN Profile = "wan"
	// ProfileLocal: gossip every 100 ms, probe every 1 s with short timeouts
	// (memberlist.DefaultLocalConfig). For one host: tests and `vigil dev`.
	ProfileLocal Profile = "local"
)

// Admission is what the mesh asks the local registry. It must not block (it is called on
// memberlist's packet and probe goroutines) and must be safe for concurrent use.
type Admission interface {
	// Admitted reports whether id is an admitted node now. A removed node answers false, and
	// so does every agent and operator: only nodes may join the mesh or sign gossip.
	Admitted(id identity.ID) bool
}

// AdmissionFunc adapts a function to Admission.
type AdmissionFunc func(identity.ID) bool

// Admitted calls f.
func (f AdmissionFunc) Admitted(id identity.ID) bool { return f(id) }

// Config configures a Mesh. Start from DefaultConfig.
type Config struct {
	// ClusterID binds every signature to one cluster. Required.
	ClusterID identity.ClusterID
	// Key is the node key: it names the node in memberlist (its peer ID) and signs the node's
	// metadata and every payload it sends. Required.
	Key identity.PrivateKey
	// Site and Role go into the signed metadata (at most 63 and 16 bytes).
	Site, Role string
	// Addrs are the node's libp2p multiaddrs (without /p2p) advertised in the metadata; the
	// first ones that fit memberlist's 512-byte metadata limit are kept.
	Addrs []string
	// Admission answers "is this an admitted node?". Required.
	Admission Admission

	// Profile is lan, wan or local. Default lan.
	Profile Profile
	// BindAddr and BindPort are where memberlist listens (TCP and UDP). Default 0.0.0.0:7946.
	// Port 0 picks a free port (tests).
	BindAddr string
	BindPort int
	// AdvertiseAddr and AdvertisePort are what other nodes dial, when the bind address is not
	// reachable as such. Default empty / 0: memberlist picks the bind address (or a private
	// interface address for 0.0.0.0) and the bind port.
	AdvertiseAddr string
	AdvertisePort int
	// Keyring holds the AES keys (16, 24 or 32 bytes) that encrypt gossip traffic, the first
	// one primary (used to encrypt; all are tried to decrypt). Empty: no encryption (allowed
	// only with AllowPlaintext, for tests and sim). See LoadKeyring.
	Keyring [][]byte
	// AllowPlaintext permits an empty Keyring. Default false.
	AllowPlaintext bool
	// Transport replaces memberlist's UDP/TCP transport (tests, sim: see MemNetwork). nil
	// uses the network.
	Transport memberlist.NodeAwareTransport

	// GossipInterval, ProbeInterval and GossipNodes override the profile when non-zero.
	GossipInterval time.Duration
	ProbeInterval  time.Duration
	GossipNodes    int

	// MaxMessageTTL is the longest validity window (expires − issued_at) a received payload may
	// have. Default 10m (the registry's command window, so a committed revocation can travel
	// for as long as it could be applied).
	MaxMessageTTL time.Duration
	// MaxClockSkew is how far in the future a received payload's issued_at may be. Default 1m.
	MaxClockSkew time.Duration
	// SignalTTL is the validity window this node gives its own signals. Default 2m.
	SignalTTL time.Duration
	// RevocationTTL is the validity window given to revocations this node gossips. Default 10m.
	RevocationTTL time.Duration
	// Rate and Burst are each reporter's token bucket: payloads per second and bucket size.
	// A reporter over its bucket has its payloads dropped (duplicates cost nothing).
	// Default 20/s, burst 100.
	Rate  float64
	Burst int
	// DedupeCapacity bounds the replay memory (entries). Entries leave when their payload
	// expires; when full, the entry expiring first is dropped. Default 131072 (about 18 MB when full, measured).
	DedupeCapacity int
	// DeliveryQueue bounds payloads waiting for OnSignal/OnRevocation; when full, new ones are
	// dropped and counted. Default 1024.
	DeliveryQueue int
	// RetransmitMult sets how many times each node passes on a payload that is new to it:
	// RetransmitMult × ceil(log10(N+1)) gossip transmissions (memberlist's own messages keep the
	// profile's multiplier, 2 to 4). Higher than memberlist's so a payload misses a node with
	// probability about e^(−RetransmitMult·log10(N+1)) before anti-entropy repairs it. Default 8.
	RetransmitMult int
	// RelayFanout is how many random members a payload too large for one UDP packet is relayed
	// to over TCP on first receipt (the originator sends it to every member). Default 3.
	RelayFanout int

	// OnSignal receives each verified, fresh, first-seen signal from another node. Called on
	// one goroutine, in arrival order; it should return quickly.
	OnSignal func(s identity.Signal)
	// OnRevocation receives each first-seen revocation command (its canonical bytes; the
	// command's own signatures verified, but not yet its authority: the caller checks it
	// against the registry) and the node that relayed it. Same goroutine as OnSignal.
	OnRevocation func(cmd []byte, from identity.ID)

	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the mesh's logs and memberlist's. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults documented on each field; the required fields
// (ClusterID, Key, Admission) are left empty.
func DefaultConfig() Config {
	return Config{
		Profile:        ProfileLAN,
		BindAddr:       "0.0.0.0",
		BindPort:       7946,
		MaxMessageTTL:  10 * time.Minute,
		MaxClockSkew:   time.Minute,
		SignalTTL:      2 * time.Minute,
		RevocationTTL:  10 * time.Minute,
		Rate:           20,
		Burst:          100,
		DedupeCapacity: 1 << 17,
		DeliveryQueue:  1024,
		RelayFanout:    3,
		RetransmitMult: 8,
	}
}

// Validate checks every field and the cross-field rules; the error names the field.
func (c *Config) Validate() error {
	if c.ClusterID.IsZero() {
		return configErr("cluster_id", "required")
	}
	if c.Key.IsZero() {
		return configErr("key", "required")
	}
	if c.Admission == nil {
		return configErr("admission", "required")
	}
	switch c.Profile {
	case ProfileLAN, ProfileWAN, ProfileLocal:
	default:
		return configErr("profile", "%q: want lan, wan or local", c.Profile)
	}
	if c.Transport == nil && net.ParseIP(c.BindAddr) == nil {
		return configErr("bind_addr", "%q is not an IP address", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return configErr("bind_port", "%d not in 0..65535", c.BindPort)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		return configErr("advertise_addr", "%q is not an IP address", c.AdvertiseAddr)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return configErr("advertise_port", "%d not in 0..65535", c.AdvertisePort)
	}
	if len(c.Keyring) == 0 && !c.AllowPlaintext {
		return configErr("keyring", "empty: gossip would travel in clear (set a keyring, or AllowPlaintext for tests)")
	}
	for i, k := range c.Keyring {
		if l := len(k); l != 16 && l != 24 && l != 32 {
			return configErr("keyring", "key %d is %d bytes, want 16, 24 or 32", i, l)
		}
	}
	if len(c.Site) > identity.MaxSiteLen {
		return configErr("site", "%d bytes, max %d", len(c.Site), identity.MaxSiteLen)
	}
	if len(c.Role) > maxRoleLen {
		return configErr("role", "%d bytes, max %d", len(c.Role), maxRoleLen)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"max_message_ttl", c.MaxMessageTTL}, {"max_clock_skew", c.MaxClockSkew}, {"signal_ttl", c.SignalTTL}, {"revocation_ttl", c.RevocationTTL}} {
		if d.v <= 0 || d.v > 24*time.Hour {
			return configErr(d.name, "%s not in (0, 24h]", d.v)
		}
	}
	if c.SignalTTL > c.MaxMessageTTL || c.RevocationTTL > c.MaxMessageTTL {
		return configErr("signal_ttl", "signal_ttl %s and revocation_ttl %s must not exceed max_message_ttl %s (other nodes would drop them)",
			c.SignalTTL, c.RevocationTTL, c.MaxMessageTTL)
	}
	if c.GossipInterval < 0 || c.ProbeInterval < 0 || c.GossipNodes < 0 {
		return configErr("gossip_interval", "overrides must not be negative")
	}
	if !(c.Rate > 0) || c.Rate > 1e6 {
		return configErr("rate", "%v not in (0, 1e6]", c.Rate)
	}
	if c.Burst < 1 || c.Burst > 1<<20 {
		return configErr("burst", "%d not in 1..%d", c.Burst, 1<<20)
	}
	if c.DedupeCapacity < 16 || c.DedupeCapacity > 1<<24 {
		return configErr("dedupe_capacity", "%d not in 16..%d", c.DedupeCapacity, 1<<24)
	}
	if c.DeliveryQueue < 1 || c.DeliveryQueue > 1<<20 {
		return configErr("delivery_queue", "%d not in 1..%d", c.DeliveryQueue, 1<<20)
	}
	if c.RetransmitMult < 1 || c.RetransmitMult > 64 {
		return configErr("retransmit_mult", "%d not in 1..64", c.RetransmitMult)
	}
	if c.RelayFanout < 1 || c.RelayFanout > 64 {
		return configErr("relay_fanout", "%d not in 1..64", c.RelayFanout)
	}
	return nil
}

// memberlistConfig builds memberlist's configuration for the profile and overrides.
func (c *Config) memberlistConfig() *memberlist.Config {
	var mc *memberlist.Config
	switch c.Profile {
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
	default:
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = c.Key.ID().String()
	mc.BindAddr, mc.BindPort = c.BindAddr, c.BindPort
	mc.AdvertiseAddr, mc.AdvertisePort = c.AdvertiseAddr, c.AdvertisePort
	if c.AdvertisePort == 0 {
		mc.AdvertisePort = c.BindPort
	}
	if c.GossipInterval > 0 {
		mc.GossipInterval = c.GossipInterval
	}
	if c.ProbeInterval > 0 {
		mc.ProbeInterval = c.ProbeInterval
	}
	if c.GossipNodes > 0 {
		mc.GossipNodes = c.GossipNodes
	}
	if c.Transport != nil {
		mc.Transport = c.Transport
	}
	return mc
}
