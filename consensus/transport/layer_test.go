package transport

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

const testProto protocol.ID = "/vigil/raft-test/1"

type side struct {
	h    host.Host
	sl   *StreamLayer
	gate *gate
}

func newSide(t *testing.T, g *gate) side {
	t.Helper()
	h := newHost(t)
	var auth Authorizer
	if g != nil {
		auth = g.Authorize
	}
	sl := NewStreamLayer(h, testProto, auth, testLogger(t, slog.LevelDebug))
	t.Cleanup(func() { _ = sl.Close() })
	return side{h: h, sl: sl, gate: g}
}

// acceptAsync runs one Accept in the background.
func acceptAsync(sl *StreamLayer) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := sl.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

// pair dials b from a and returns both ends.
func pair(t *testing.T, a, b side) (dialed, accepted net.Conn) {
	t.Helper()
	acc := acceptAsync(b.sl)
	dialed, err := a.sl.Dial(raftAddr(b), 2*time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	// Streams are negotiated lazily: the handler runs once the first bytes arrive.
	if _, err := dialed.Write([]byte("hello")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	select {
	case accepted = <-acc:
		if accepted == nil {
			t.Fatal("Accept failed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return")
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(accepted, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	return dialed, accepted
}

func raftAddr(s side) raft.ServerAddress { return raft.ServerAddress(s.sl.Addr().String()) }

func TestConnRoundTrip(t *testing.T) {
	a, b := newSide(t, newGate()), newSide(t, newGate())
	dialed, accepted := pair(t, a, b)

	payload := bytes.Repeat([]byte("raft"), 64<<10) // 256 KiB, larger than any stream window
	go func() { _, _ = accepted.Write(payload) }()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(dialed, got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("bulk read: %v (equal=%v)", err, bytes.Equal(got, payload))
	}

	info, err := ParseServerAddress(raft.ServerAddress(accepted.RemoteAddr().String()))
	if err != nil || info.ID != a.h.ID() {
		t.Fatalf("accepted.RemoteAddr() = %q (%v), want an address of %s", accepted.RemoteAddr(), err, a.h.ID())
	}
	info, err = ParseServerAddress(raft.ServerAddress(dialed.RemoteAddr().String()))
	if err != nil || info.ID != b.h.ID() {
		t.Fatalf("dialed.RemoteAddr() = %q (%v), want an address of %s", dialed.RemoteAddr(), err, b.h.ID())
	}
	if dialed.RemoteAddr().String() != b.sl.Addr().String() {
		t.Errorf("dialed.RemoteAddr() = %q, want b's ServerAddress %q", dialed.RemoteAddr(), b.sl.Addr())
	}
	if info, _ := ParseServerAddress(raft.ServerAddress(dialed.LocalAddr().String())); info.ID != a.h.ID() {
		t.Errorf("dialed.LocalAddr() = %q, want an address of %s", dialed.LocalAddr(), a.h.ID())
	}
	if got, want := b.sl.Addr().String(), string(ServerAddress(b.h.ID(), b.h.Addrs())); got != want {
		t.Errorf("Addr() = %q, want %q", got, want)
	}
	if b.sl.Addr().Network() != "libp2p" {
		t.Errorf("Network() = %q", b.sl.Addr().Network())
	}

	// Close gives the other side EOF, and untracks both ends.
	if err := dialed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dialed.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n, err := accepted.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after remote close: %d, %v; want EOF", n, err)
	}
	_ = accepted.Close()
	if a.sl.Stats().Open != 0 || b.sl.Stats().Open != 0 {
		t.Fatalf("open streams after close: a=%d b=%d", a.sl.Stats().Open, b.sl.Stats().Open)
	}

	// A bare peer ID dials once the peerstore knows the peer (it does now).
	c, err := a.sl.Dial(raft.ServerAddress(b.h.ID().String()), 2*time.Second)
	if err != nil {
		t.Fatalf("Dial by bare peer ID: %v", err)
	}
	_ = c.Close()
}

func TestDeadlines(t *testing.T) {
	a, b := newSide(t, newGate()), newSide(t, newGate())
	dialed, accepted := pair(t, a, b)

	if err := dialed.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := dialed.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past deadline: %v, want a timeout net.Error", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("deadline fired after %s", waited)
	}
	// Clearing the deadline makes the conn usable again.
	if err := dialed.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := accepted.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(dialed, make([]byte, 1)); err != nil {
		t.Fatalf("read after clearing deadline: %v", err)
	}
	// A write deadline in the past fails the write.
	if err := accepted.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := accepted.Write([]byte("late")); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Write past deadline: %v, want a timeout net.Error", err)
	}
}

func TestListenerClose(t *testing.T) {
	a, b := newSide(t, newGate()), newSide(t, newGate())
	dialed, accepted := pair(t, a, b)

	errCh := make(chan error, 1)
	go func() { _, err := b.sl.Accept(); errCh <- err }()
	time.Sleep(20 * time.Millisecond) // let Accept block (absence of this only weakens the test)
	if err := b.sl.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errCh:
		if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Accept")
	}
	if err := b.sl.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.sl.Accept(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept on closed layer: %v", err)
	}
	if _, err := b.sl.Dial(raftAddr(a), time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dial on closed layer: %v", err)
	}
	// Close reset b's open streams: both ends see an error.
	if _, err := accepted.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Fatalf("read on a stream of a closed layer: %v, want a reset error", err)
	}
	if _, err := dialed.Read(make([]byte, 1)); err == nil {
		t.Fatal("remote end still readable after Close")
	}
	// The handler is gone: a new stream is refused by protocol negotiation.
	c, err := a.sl.Dial(raftAddr(b), 2*time.Second)
	if err == nil {
		_, _ = c.Write([]byte("x"))
		_, err = c.Read(make([]byte, 1))
	}
	if err == nil {
		t.Fatal("stream to a closed layer worked")
	}
	for _, p := range b.h.Mux().Protocols() {
		if p == testProto {
			t.Fatal("handler still registered after Close")
		}
	}
}

func TestUnauthorizedDialRefusedBeforeStream(t *testing.T) {
	b := newSide(t, newGate())
	a := newSide(t, newGate(b.h.ID()))

	_, err := a.sl.Dial(raftAddr(b), 2*time.Second)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Dial: %v, want ErrUnauthorized", err)
	}
	if !errors.Is(err, errDenied) || !strings.Contains(err.Error(), b.h.ID().String()) {
		t.Fatalf("Dial error %q should wrap the authorizer's error and name the peer", err)
	}
	if n := a.gate.callsFor(b.h.ID()); n != 1 {
		t.Fatalf("authorizer called %d times for the target, want 1", n)
	}
	// Nothing reached the network: no connection, and b never saw a stream.
	if got := a.h.Network().Connectedness(b.h.ID()); got == network.Connected {
		t.Fatal("a connected to b despite refusing it")
	}
	if len(a.h.Network().ConnsToPeer(b.h.ID())) != 0 {
		t.Fatal("a holds a connection to a refused peer")
	}
	if st := a.sl.Stats(); st.DialRefused != 1 || st.Open != 0 {
		t.Fatalf("a stats %+v, want DialRefused 1, Open 0", st)
	}
	if st := b.sl.Stats(); st != (Stats{}) {
		t.Fatalf("b stats %+v, want zero", st)
	}
}

func TestUnauthorizedInboundResetAndNeverAccepted(t *testing.T) {
	a := newSide(t, newGate())
	b := newSide(t, newGate(a.h.ID()))

	acc := acceptAsync(b.sl)
	c, err := a.sl.Dial(raftAddr(b), 2*time.Second)
	if err == nil {
		// Negotiation is lazy: the refusal shows on the first exchange.
		_, _ = c.Write([]byte("AppendEntries"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || err == io.EOF || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("read on a refused stream: %v, want a reset", err)
		}
	}
	eventually(t, 5*time.Second, "b to count the refusal", func() bool { return b.sl.Stats().AcceptRefused == 1 })
	if n := b.gate.callsFor(a.h.ID()); n != 1 {
		t.Fatalf("b's authorizer called %d times for a, want 1", n)
	}
	select {
	case conn := <-acc:
		t.Fatalf("a refused stream reached Accept: %v", conn)
	case <-time.After(100 * time.Millisecond):
	}
	if st := b.sl.Stats(); st.Open != 0 {
		t.Fatalf("b tracks %d streams of a refused peer", st.Open)
	}
}

func TestNilAuthorizerDenies(t *testing.T) {
	a := newSide(t, nil)
	b := newSide(t, nil)
	if _, err := a.sl.Dial(raftAddr(b), 2*time.Second); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Dial with nil authorizer: %v, want ErrUnauthorized", err)
	}
	// Inbound: a permissive dialer against b's nil authorizer.
	c := newSide(t, newGate())
	conn, err := c.sl.Dial(raftAddr(b), 2*time.Second)
	if err == nil {
		_, _ = conn.Write([]byte("x"))
		_, err = conn.Read(make([]byte, 1))
	}
	if err == nil {
		t.Fatal("stream into a nil-authorizer layer worked")
	}
	eventually(t, 5*time.Second, "b to refuse", func() bool { return b.sl.Stats().AcceptRefused == 1 })
}

func TestDropPeer(t *testing.T) {
	a, b := newSide(t, newGate()), newSide(t, newGate())
	c := newSide(t, newGate())
	out1, in1 := pair(t, a, b)
	in2, out2 := pair(t, b, a) // b dials a: b holds an outbound stream to a as well
	keepOut, keepIn := pair(t, c, b)

	if st := b.sl.Stats(); st.Open != 3 {
		t.Fatalf("b open streams = %d, want 3", st.Open)
	}
	// The node's revocation path: refuse first, then drop.
	b.gate.set(a.h.ID(), true)
	if n := b.sl.DropPeer(a.h.ID()); n != 2 {
		t.Fatalf("DropPeer reset %d streams, want 2", n)
	}
	for name, conn := range map[string]net.Conn{"a's outbound": out1, "a's inbound": out2, "b's inbound": in1, "b's outbound": in2} {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := conn.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Errorf("%s stream still open after DropPeer: %v", name, err)
		}
	}
	if st := b.sl.Stats(); st.Open != 1 || st.Dropped != 2 {
		t.Fatalf("b stats %+v, want Open 1 Dropped 2", st)
	}
	// Other peers are untouched.
	if _, err := keepOut.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(keepIn, make([]byte, 2)); err != nil {
		t.Fatalf("unrelated stream broken by DropPeer: %v", err)
	}
	// And a can no longer open streams to b.
	conn, err := a.sl.Dial(raftAddr(b), 2*time.Second)
	if err == nil {
		_, _ = conn.Write([]byte("x"))
		_, err = conn.Read(make([]byte, 1))
	}
	if err == nil {
		t.Fatal("dropped, refused peer opened a stream")
	}
	if _, err := b.sl.Dial(raftAddr(a), 2*time.Second); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("b dialing a refused peer: %v", err)
	}
}

func TestHCLogger(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	l := NewHCLogger(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	l.Debug("hidden")
	l.Info("shown", "term", 3)
	l.Named("net").With("peer", "x").Warn("warned", "err", errors.New("boom"))
	l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[ERROR] std line")
	out := buf.String()
	for _, want := range []string{
		`level=INFO msg=shown logger=raft term=3`,
		`level=WARN msg=warned logger=raft.net peer=x err=boom`,
		`level=ERROR msg="std line" logger=raft`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Errorf("debug line logged at info level:\n%s", out)
	}
	if l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Errorf("levels: IsDebug=%v IsInfo=%v GetLevel=%v", l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
	l.SetLevel(hclog.Error)
	if l.IsWarn() || !l.IsError() {
		t.Error("SetLevel(Error) did not raise the floor")
	}
	if NewHCLogger(nil, "x").IsError() {
		t.Error("nil slog logger should discard")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Inbound streams that passed the Authorizer but were never accepted hold a libp2p handler
// goroutine; Close must release every one of them and reset the streams.
func TestCloseReleasesPendingStreams(t *testing.T) {
	a, b := newSide(t, newGate()), newSide(t, newGate())
	var conns []net.Conn
	for range 3 {
		c, err := a.sl.Dial(raftAddr(b), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	eventually(t, 5*time.Second, "3 pending inbound streams", func() bool { return b.sl.Stats().Open == 3 })
	if err := b.sl.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("stream %d not reset by Close: %v", i, err)
		}
	}
	if st := b.sl.Stats(); st.Open != 0 {
		t.Fatalf("b still tracks %d streams after Close", st.Open)
	}
}

// TestLastHeard: a layer records when bytes last arrived from a peer, on dialed and accepted
// streams alike, and only then.
func TestLastHeard(t *testing.T) {
	a, b := newSide(t, newGate()), newSide(t, newGate())
	before := time.Now()
	dialed, accepted := pair(t, a, b) // b has read "hello" from a
	if got := b.sl.LastHeard(a.h.ID()); got.Before(before) || got.After(time.Now()) {
		t.Fatalf("b.LastHeard(a) = %v, want within the pair setup (after %v)", got, before)
	}
	if got := a.sl.LastHeard(b.h.ID()); !got.IsZero() {
		t.Fatalf("a.LastHeard(b) = %v before a read anything from b", got)
	}
	if got := a.sl.LastHeard(newHost(t).ID()); !got.IsZero() {
		t.Fatalf("LastHeard of a stranger = %v", got)
	}
	mid := time.Now()
	if _, err := accepted.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(dialed, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if got := a.sl.LastHeard(b.h.ID()); got.Before(mid) {
		t.Fatalf("a.LastHeard(b) = %v after reading b's response, want after %v", got, mid)
	}
}
