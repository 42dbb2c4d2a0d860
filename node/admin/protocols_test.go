package admin_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/vigil-mesh/vigil/node/admin"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/admin/adminv1/adminv1connect"
)

// TestProtocols: the API answers plain JSON over HTTP (what curl sends) on the Unix socket, and
// gRPC over mTLS (HTTP/2).
func TestProtocols(t *testing.T) {
	e := newEnv(t)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", e.sock)
	}}}
	resp, err := hc.Post("http://vigil/vigil.admin.v1.AdminService/Status", "application/json", strings.NewReader(`{"consistent":true}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"nodeName":"n1"`) {
		t.Fatalf("JSON status: %d %s", resp.StatusCode, body)
	}
	// A refused JSON call carries the Vigil code in a header curl users can see.
	resp, err = hc.Post("http://vigil/vigil.admin.v1.AdminService/RevokeAgent", "application/json", strings.NewReader(`{"command":"AAEC"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(admin.ErrorCodeHeader) != "malformed" {
		t.Fatalf("JSON refusal: %d %q", resp.StatusCode, resp.Header.Get(admin.ErrorCodeHeader))
	}

	conf, err := admin.TLSConfig(e.ops[0], e.nodeKey.ID().Peer())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}
	g := adminv1connect.NewAdminServiceClient(&http.Client{Transport: tr}, "https://"+e.addr, connect.WithGRPC())
	st, err := g.Status(ctxT(t), connect.NewRequest(&adminv1.StatusRequest{}))
	if err != nil || st.Msg.NodeId != e.nodeKey.ID().String() {
		t.Fatalf("gRPC status: %v %v", st, err)
	}
}
