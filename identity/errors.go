package identity

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package wraps exactly one of these (decode errors
// that hit a size cap wrap both ErrTooLarge and ErrMalformed); test with errors.Is.
var (
	ErrMalformed              = errors.New("malformed")
	ErrTooLarge               = errors.New("too large")
	ErrBadSignature           = errors.New("bad signature")
	ErrUnsigned               = errors.New("unsigned")
	ErrDuplicateSigner        = errors.New("duplicate signer")
	ErrWrongCluster           = errors.New("wrong cluster")
	ErrReplay                 = errors.New("replayed nonce")
	ErrStale                  = errors.New("stale command")
	ErrFromFuture             = errors.New("command from the future")
	ErrUnauthorized           = errors.New("unauthorized")
	ErrInsufficientSignatures = errors.New("insufficient signatures")
	ErrNoGenesis              = errors.New("no genesis")
	ErrAlreadyInitialised     = errors.New("already initialised")
	ErrNotFound               = errors.New("not found")
	ErrExists                 = errors.New("already exists")
	ErrRevokedName            = errors.New("revoked name")
	ErrRevokedKey             = errors.New("revoked key")
	ErrInvalid                = errors.New("invalid")
	ErrVersionConflict        = errors.New("version conflict")
	ErrBadKeyFile             = errors.New("bad key file")
	ErrKeyFilePermissions     = errors.New("key file permissions")
)

// codes maps stable wire codes to sentinels. Order matters for CodeOf: ErrTooLarge is checked
// before ErrMalformed because cap violations wrap both.
var codes = []struct {
	code string
	err  error
}{
	{"too_large", ErrTooLarge},
	{"malformed", ErrMalformed},
	{"bad_signature", ErrBadSignature},
	{"unsigned", ErrUnsigned},
	{"duplicate_signer", ErrDuplicateSigner},
	{"wrong_cluster", ErrWrongCluster},
	{"replay", ErrReplay},
	{"stale", ErrStale},
	{"from_future", ErrFromFuture},
	{"unauthorized", ErrUnauthorized},
	{"insufficient_signatures", ErrInsufficientSignatures},
	{"no_genesis", ErrNoGenesis},
	{"already_initialised", ErrAlreadyInitialised},
	{"not_found", ErrNotFound},
	{"exists", ErrExists},
	{"revoked_name", ErrRevokedName},
	{"revoked_key", ErrRevokedKey},
	{"invalid", ErrInvalid},
	{"version_conflict", ErrVersionConflict},
	{"bad_key_file", ErrBadKeyFile},
	{"key_file_permissions", ErrKeyFilePermissions},
}

// CodeOf returns the stable code of the sentinel err wraps: "" for nil, "unknown" for an error
// that wraps none of this package's sentinels.
func CodeOf(err error) string {
	if err == nil {
		return ""
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "unknown"
}

// ErrorForCode rebuilds an error from a code produced by CodeOf (for example on another node) so
// that errors.Is keeps working. detail is normally the original error's text, which already
// carries the package prefix and the sentinel's text: it is kept as it is, and the prefix or the
// sentinel's text is added only where it is missing, so a message that crosses several nodes
// does not grow ("identity: identity: … version conflict: version conflict"). An unknown code
// gives an error that wraps no sentinel.
func ErrorForCode(code, detail string) error {
	for _, c := range codes {
		if c.code == code {
			errs := []error{c.err}
			if c.err == ErrTooLarge {
				errs = append(errs, ErrMalformed)
			}
			msg := detail
			if !strings.HasSuffix(msg, c.err.Error()) && !strings.Contains(msg, c.err.Error()+": ") {
				msg += ": " + c.err.Error()
			}
			if !strings.HasPrefix(msg, "identity: ") {
				msg = "identity: " + msg
			}
			return &remoteError{msg: msg, errs: errs}
		}
	}
	return fmt.Errorf("identity: %s (unknown error code %q)", detail, code)
}

// remoteError is an error rebuilt from its code and its text: its message is the text, and it
// wraps the code's sentinels.
type remoteError struct {
	msg  string
	errs []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.errs }

// errf wraps a sentinel under the package prefix.
func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("identity: %s: %w", fmt.Sprintf(format, args...), sentinel)
}

// invalidf reports a bad field value; the message starts with the field name.
func invalidf(field, format string, args ...any) error {
	return fmt.Errorf("identity: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalid)
}

// tooLargef reports a cap violation in decoded bytes.
func tooLargef(format string, args ...any) error {
	return fmt.Errorf("identity: %s: %w: %w", fmt.Sprintf(format, args...), ErrTooLarge, ErrMalformed)
}
