package admin_test

import (
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/client"
)

// TestNotReady: while Config.Ready reports a reason, a caller the registry cannot classify is
// answered Unavailable with that reason (its key may simply not be replayed yet) instead of
// PermissionDenied; callers it can classify are decided as usual; a removed node answers every
// call, the Unix socket's too, FailedPrecondition with the removal.
func TestNotReady(t *testing.T) {
	e := newEnv(t)
	var reason atomic.Pointer[error]
	set := func(err error) {
		if err == nil {
			reason.Store(nil)
			return
		}
		reason.Store(&err)
	}
	cfg := admin.DefaultConfig()
	cfg.Key, cfg.Logger = e.nodeKey, testLogger(t)
	cfg.Ready = func() error {
		if p := reason.Load(); p != nil {
			return *p
		}
		return nil
	}
	srv := admin.NewServer(e.node, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeTLS(ln); err != nil {
		t.Fatal(err)
	}
	sock := t.TempDir() + "/admin.sock"
	if err := srv.ServeUnix(sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	op, err := client.Dial(ln.Addr().String(), e.nodeKey.ID().Peer(), e.ops[0])
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := client.Dial(ln.Addr().String(), e.nodeKey.ID().Peer(), mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := client.Dial(ln.Addr().String(), e.nodeKey.ID().Peer(), e.revoked)
	if err != nil {
		t.Fatal(err)
	}
	local := client.DialUnix(sock)
	ctx := ctxT(t)
	wantCode := func(who string, c client.Client, code connect.Code, msg, header string) {
		t.Helper()
		err := call(ctx, c, "Status", nil)
		if code == 0 {
			if err != nil {
				t.Fatalf("%s: Status: %v, want success", who, err)
			}
			return
		}
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != code {
			t.Fatalf("%s: Status: %v, want %v", who, err, code)
		}
		if !strings.Contains(ce.Message(), msg) {
			t.Fatalf("%s: message %q lacks %q", who, ce.Message(), msg)
		}
		if header != "" && ce.Meta().Get(admin.ErrorCodeHeader) != header {
			t.Fatalf("%s: %s = %q, want %q", who, admin.ErrorCodeHeader, ce.Meta().Get(admin.ErrorCodeHeader), header)
		}
	}

	set(errors.New("replaying the registry (applied 3 of 9)"))
	wantCode("unknown key, not ready", stranger, connect.CodeUnavailable, "node not ready: replaying the registry (applied 3 of 9)", admin.NotReadyCode)
	wantCode("operator, not ready", op, 0, "", "")
	wantCode("revoked key, not ready", revoked, connect.CodePermissionDenied, "role revoked may not call it", "")
	wantCode("unix socket, not ready", local, 0, "", "")

	set(nil)
	wantCode("unknown key, ready", stranger, connect.CodePermissionDenied, "role unknown may not call it", "")

	set(&consensus.RemovedError{Removal: consensus.Removal{Node: e.nodeKey.ID().String(), Index: 42, By: []string{"op1"}}})
	for who, c := range map[string]client.Client{"operator": op, "unknown key": stranger, "unix socket": local} {
		wantCode(who+", removed", c, connect.CodeFailedPrecondition, "was removed from the cluster at index 42 by op1", "consensus.removed")
	}
}
