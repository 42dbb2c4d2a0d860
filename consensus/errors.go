package consensus

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vigil-mesh/vigil/identity"
)

// Sentinel errors. Every error this package returns wraps one of these or an identity sentinel
// (a command the registry rejected); test with errors.Is.
var (
	// ErrNoLeader: no leader is known (election in progress, or this node is cut off).
	ErrNoLeader = errors.New("no leader")
	// ErrTimeout: the deadline passed before the outcome was known. A proposal that timed out
	// may still be committed later.
	ErrTimeout = errors.New("timeout")
	// ErrNotAdmitted: the peer is not an admitted node of this cluster.
	ErrNotAdmitted = errors.New("not admitted")
	// ErrDataDir: the data directory belongs to another cluster or another node key, or its
	// identity files are unreadable. It is never reset automatically.
	ErrDataDir = errors.New("data directory mismatch")
	// ErrClosed: the node has been closed.
	ErrClosed = errors.New("closed")
	// ErrProtocol: a peer sent a malformed or oversized message.
	ErrProtocol = errors.New("protocol error")
	// ErrInvalidConfig: a Config field has a bad value; the message names the field.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrRemoved: operators removed this node from the cluster; raft is stopped (see
	// RemovedError for when and by whom).
	ErrRemoved = errors.New("node removed")
	// ErrUnreachable: a join peer could not be reached at its address (nothing listens there,
	// or the address names another peer ID).
	ErrUnreachable = errors.New("unreachable")

	// errNotLeader: the node asked is not the leader; the request was not acted on, so the
	// caller may retry with the new leader.
	errNotLeader = fmt.Errorf("not the leader: %w", ErrNoLeader)
)

// Wire codes of this package's sentinels. identity's codes have no dot, ours are prefixed so the
// two spaces never collide.
var consensusCodes = []struct {
	code string
	err  error
}{
	{"consensus.not_leader", errNotLeader},
	{"consensus.no_leader", ErrNoLeader},
	{"consensus.timeout", ErrTimeout},
	{"consensus.not_admitted", ErrNotAdmitted},
	{"consensus.closed", ErrClosed},
	{"consensus.protocol", ErrProtocol},
	{"consensus.removed", ErrRemoved},
}

// codeOf maps an error to its wire code: identity's first (a registry rejection is the most
// specific answer), then ours.
func codeOf(err error) string {
	if code := identity.CodeOf(err); code != "unknown" {
		return code
	}
	for _, c := range consensusCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "unknown"
}

// errorForCode rebuilds an error received from a peer so errors.Is works at the caller.
func errorForCode(code, detail string) error {
	if code == "" {
		return nil
	}
	for _, c := range consensusCodes {
		if c.code == code {
			// detail is the remote error's text, already "consensus: …: <sentinel>": keep it
			// and add the sentinel's text only when it is missing, so it is not said twice.
			if strings.HasSuffix(detail, c.err.Error()) || strings.Contains(detail, c.err.Error()+": ") {
				return &remoteError{msg: "consensus: remote: " + strings.TrimPrefix(detail, "consensus: "), err: c.err}
			}
			return fmt.Errorf("consensus: remote: %s: %w", detail, c.err)
		}
	}
	return identity.ErrorForCode(code, detail)
}

// remoteError is a peer's error rebuilt from its code and text: the text as it was, wrapping
// the code's sentinel.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }

// errf wraps a sentinel under the package prefix.
func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("consensus: %s: %w", fmt.Sprintf(format, args...), sentinel)
}
