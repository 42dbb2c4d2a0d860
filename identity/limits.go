package identity

import "time"

// Explicit caps on everything decoded from the network or the disk. Every length is checked
// against these before anything is allocated.
const (
	MaxCommandSize    = 64 << 10                       // bytes of one encoded Command, signatures included
	MaxSignatures     = 16                             // signatures on one command
	MaxNameLen        = 63                             // bytes of an agent, node or operator name
	MaxTrustDomainLen = 255                            // bytes of a SPIFFE trust domain
	MaxSPIFFELen      = 2048                           // bytes of a SPIFFE URI
	MaxLabels         = 32                             // labels on one agent
	MaxLabelKeyLen    = 63                             // bytes of a label key
	MaxLabelValueLen  = 63                             // bytes of a label value
	MaxCapabilities   = 64                             // capabilities on one agent
	MaxCapabilityLen  = 128                            // bytes of one capability
	MaxPolicySize     = 48 << 10                       // bytes of the policy document
	MaxAddrs          = 8                              // multiaddrs of one node
	MaxAddrLen        = 256                            // bytes of one multiaddr string
	MaxReasonLen      = 1024                           // bytes of a revocation/quarantine reason
	MaxSiteLen        = 63                             // bytes of a node's site
	MaxOperators      = 64                             // operators in the registry
	MaxGenesisNodes   = 64                             // nodes listed in a genesis command
	MaxNodes          = 4096                           // admitted nodes in the registry
	MaxAgents         = 1 << 24                        // agents in a snapshot
	MaxAuditEntries   = 1 << 28                        // audit entries in a snapshot
	MaxAuditDetailLen = 1024                           // bytes of an audit detail line
	MaxAuditSubjects  = MaxOperators + MaxGenesisNodes // subjects of one audit entry
	MaxSnapshotNonces = 1 << 24                        // remembered nonces in a snapshot
	// MaxRetiredKeys bounds retired keys in a snapshot only by the snapshot size (32 bytes each):
	// rotations retire a key each, without limit, and a registry must always be able to read
	// back the snapshot it wrote. Nothing is allocated from the count.
	MaxRetiredKeys      = MaxSnapshotSize / 32
	MaxSnapshotStrBytes = 64 << 10 // any other string in a snapshot
)

// Limits are the registry's time window. They are part of the replicated state (and the
// snapshot), so every replica applies the same window.
type Limits struct {
	// MaxCommandAge is how far in the past a command's IssuedAt may be. Default 10 minutes.
	MaxCommandAge time.Duration
	// MaxClockSkew is how far in the future a command's IssuedAt may be. Default 1 minute.
	MaxClockSkew time.Duration
}

// DefaultLimits returns MaxCommandAge 10m and MaxClockSkew 1m.
func DefaultLimits() Limits {
	return Limits{MaxCommandAge: 10 * time.Minute, MaxClockSkew: time.Minute}
}

// Validate checks that both durations are positive and at most 24 hours (the nonce memory grows
// with the window).
func (l Limits) Validate() error {
	if l.MaxCommandAge <= 0 || l.MaxCommandAge > 24*time.Hour {
		return invalidf("max_command_age", "must be in (0, 24h], got %s", l.MaxCommandAge)
	}
	if l.MaxClockSkew <= 0 || l.MaxClockSkew > 24*time.Hour {
		return invalidf("max_clock_skew", "must be in (0, 24h], got %s", l.MaxClockSkew)
	}
	return nil
}
