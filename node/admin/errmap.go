package admin

import (
	"context"
	"errors"
	"strings"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
)

// ErrorCodeHeader is the response metadata key that carries the stable error code of a
// registry or consensus rejection (the same code is in the ErrorDetail).
const ErrorCodeHeader = "Vigil-Error-Code"

// errorCodes maps sentinels to connect codes, first match wins. identity's ErrTooLarge wraps
// ErrMalformed too, so order does not matter between those two (same code).
var errorCodes = []struct {
	err  error
	code connect.Code
}{
	{identity.ErrUnauthorized, connect.CodePermissionDenied},
	{identity.ErrInsufficientSignatures, connect.CodePermissionDenied},
	{identity.ErrBadSignature, connect.CodePermissionDenied},
	{identity.ErrTooLarge, connect.CodeInvalidArgument},
	{identity.ErrMalformed, connect.CodeInvalidArgument},
	{identity.ErrInvalid, connect.CodeInvalidArgument},
	{identity.ErrUnsigned, connect.CodeInvalidArgument},
	{identity.ErrDuplicateSigner, connect.CodeInvalidArgument},
	{identity.ErrWrongCluster, connect.CodeInvalidArgument},
	{identity.ErrExists, connect.CodeAlreadyExists},
	{identity.ErrNotFound, connect.CodeNotFound},
	{identity.ErrReplay, connect.CodeFailedPrecondition},
	{identity.ErrStale, connect.CodeFailedPrecondition},
	{identity.ErrFromFuture, connect.CodeFailedPrecondition},
	{identity.ErrVersionConflict, connect.CodeFailedPrecondition},
	{identity.ErrRevokedName, connect.CodeFailedPrecondition},
	{identity.ErrRevokedKey, connect.CodeFailedPrecondition},
	{identity.ErrNoGenesis, connect.CodeFailedPrecondition},
	{identity.ErrAlreadyInitialised, connect.CodeFailedPrecondition},
	{consensus.ErrNoLeader, connect.CodeUnavailable},
	{consensus.ErrClosed, connect.CodeUnavailable},
	{consensus.ErrProtocol, connect.CodeUnavailable},
	{consensus.ErrNotAdmitted, connect.CodeUnavailable},
	{consensus.ErrTimeout, connect.CodeDeadlineExceeded},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded},
	{context.Canceled, connect.CodeCanceled},
}

// consensusCodes are the wire codes of consensus's exported sentinels (as consensus names them).
var consensusCodes = []struct {
	err  error
	code string
}{
	{consensus.ErrNoLeader, "consensus.no_leader"},
	{consensus.ErrTimeout, "consensus.timeout"},
	{consensus.ErrNotAdmitted, "consensus.not_admitted"},
	{consensus.ErrClosed, "consensus.closed"},
	{consensus.ErrProtocol, "consensus.protocol"},
}

// ErrorCode returns the stable code of err: identity.CodeOf when err wraps an identity
// sentinel, else a "consensus.*" code, else "unknown".
func ErrorCode(err error) string {
	if c := identity.CodeOf(err); c != "unknown" {
		return c
	}
	for _, c := range consensusCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "unknown"
}

// toConnect turns a backend error into a connect error whose message says why, with the stable
// code in an ErrorDetail and in the ErrorCodeHeader metadata.
func toConnect(err error) *connect.Error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	code := connect.CodeInternal
	for _, m := range errorCodes {
		if errors.Is(err, m.err) {
			code = m.code
			break
		}
	}
	msg := tidyMessage(err.Error())
	out := connect.NewError(code, &tidyError{msg: msg, err: err})
	ec := ErrorCode(err)
	out.Meta().Set(ErrorCodeHeader, ec)
	if d, derr := connect.NewErrorDetail(&adminv1.ErrorDetail{Code: ec, Reason: msg}); derr == nil {
		out.AddDetail(d)
	}
	return out
}

// invalidArg is a request-validation error naming the field; its code is identity's "invalid"
// (or "malformed"/"too_large" through sentinel) so clients can branch on it like a rejection.
func invalidArg(sentinel error, field, format string, args ...any) *connect.Error {
	return toConnect(errf(sentinel, "%s: "+format, append([]any{field}, args...)...))
}

// tidyMessage removes the repetitions that wrapping leaves in an error's text: a part (between
// ": ") that repeats the part before it or the end of it, as in "agent \"a\" already exists:
// already exists" or "identity: identity: …". Sentinels keep their text so that errors.Is and
// logs work; the API caller reads each thing once.
func tidyMessage(msg string) string {
	parts := strings.Split(msg, ": ")
	out := parts[:1]
	for _, p := range parts[1:] {
		last := out[len(out)-1]
		if p == last || strings.HasSuffix(last, " "+p) {
			continue
		}
		out = append(out, p)
	}
	return strings.Join(out, ": ")
}

// tidyError carries the tidied text of err and wraps err.
type tidyError struct {
	msg string
	err error
}

func (e *tidyError) Error() string { return e.msg }
func (e *tidyError) Unwrap() error { return e.err }
