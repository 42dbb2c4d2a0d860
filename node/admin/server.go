package admin

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/consensus"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1/adminv1connect"
)

// Backend is what the admin server needs from the replicated registry; *consensus.Node
// implements it. All methods are safe for concurrent use.
type Backend interface {
	// Propose replicates a signed command and returns the registry's verdict (blocks until
	// applied, rejected, or ctx ends).
	Propose(ctx context.Context, cmd *identity.Command) (consensus.ApplyResult, error)
	// Read runs fn on the local replica under its read lock; fn must not keep the registry.
	Read(fn func(*identity.Registry))
	// ConsistentRead runs fn once the local replica covers the leader's commit index.
	ConsistentRead(ctx context.Context, fn func(*identity.Registry)) error
	// WaitApplied blocks until the local replica has applied every entry up to index, or ctx
	// ends.
	WaitApplied(ctx context.Context, index uint64) error
	Members() ([]consensus.Member, error)
	Leader() peer.ID
	IsLeader() bool
	State() raft.RaftState
	LastContact() time.Duration
	AppliedIndex() uint64
	ID() identity.ID
}

var _ Backend = (*consensus.Node)(nil)

// Server serves the admin API over mutual TLS (ServeTLS) and a Unix socket (ServeUnix).
type Server struct {
	b      Backend
	cfg    Config
	cfgErr error
	h      http.Handler // the connect handler, authorised, without a caller attached

	mu      sync.Mutex
	closed  bool
	servers []*http.Server
	sockets []string
	wg      sync.WaitGroup
}

// NewServer returns a server over b. cfg should come from DefaultConfig(); an invalid cfg is
// reported by ServeTLS and ServeUnix (and Handler answers every call with Internal).
func NewServer(b Backend, cfg Config) *Server {
	s := &Server{b: b, cfg: cfg, cfgErr: cfg.Validate()}
	var interceptors []connect.Interceptor
	if s.cfgErr == nil && cfg.Metrics != nil {
		m, err := newCallMetrics(cfg.Metrics)
		if err != nil {
			s.cfgErr = errf(ErrInvalidConfig, "metrics: %v", err)
		} else {
			// Outermost, so calls that authorisation denies are counted too.
			interceptors = append(interceptors, connect.UnaryInterceptorFunc(m.interceptor))
		}
	}
	if s.cfgErr != nil {
		s.h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, s.cfgErr.Error(), http.StatusInternalServerError)
		})
		return s
	}
	interceptors = append(interceptors, connect.UnaryInterceptorFunc(s.authorize))
	_, h := adminv1connect.NewAdminServiceHandler(&service{s: s},
		connect.WithReadMaxBytes(cfg.MaxRequestBytes),
		connect.WithInterceptors(interceptors...),
	)
	s.h = h
	return s
}

// Handler returns the API as an http.Handler for callers that run their own server. The caller
// is taken from the request's TLS client certificate; a request without one is denied. (The
// Unix socket's local role is given only by ServeUnix.)
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := tlsCaller(r); err == nil {
			r = r.WithContext(withCaller(r.Context(), c))
		}
		s.h.ServeHTTP(w, r)
	})
}

func (s *Server) localHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.h.ServeHTTP(w, r.WithContext(withCaller(r.Context(), Caller{Local: true})))
	})
}

// authorize is the one place where MethodRoles is enforced.
func (s *Server) authorize(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		proc := req.Spec().Procedure
		var notReady error
		if s.cfg.Ready != nil {
			notReady = s.cfg.Ready()
		}
		if errors.Is(notReady, consensus.ErrRemoved) {
			return nil, notReadyError(connect.CodeFailedPrecondition, notReady)
		}
		role := RoleUnknown
		c, ok := CallerFrom(ctx)
		switch {
		case ok && c.Local:
			role = RoleLocal
		case ok && !c.ID.IsZero():
			now := s.cfg.Now()
			s.b.Read(func(r *identity.Registry) { role = roleOf(r, c.ID, now) })
		}
		if role == RoleUnknown && notReady != nil && ok && !c.ID.IsZero() {
			// The registry may not hold the caller's key yet: say so rather than deny.
			s.cfg.Logger.Info("admin call refused: node not ready", "procedure", proc, "caller", c.ID.String(), "reason", notReady.Error())
			return nil, notReadyError(connect.CodeUnavailable, notReady)
		}
		if !Allowed(proc, role) {
			s.cfg.Logger.Info("admin call denied", "procedure", proc, "role", role.String(), "caller", c.ID.String())
			return nil, toConnect(errf(identity.ErrUnauthorized, "%s: role %s may not call it", proc, role))
		}
		return next(ctx, req)
	}
}

// ServeTLS serves the API with mutual TLS on ln (e.g. :7401) in the background, until Close.
// The server certificate comes from Config.Key.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	conf, err := TLSConfig(s.cfg.Key, "")
	if err != nil {
		return err
	}
	srv := s.httpServer(s.Handler())
	srv.TLSConfig = conf
	srv.ConnContext = connContext
	return s.start(srv, func() error { return srv.ServeTLS(ln, "", "") }, "")
}

// ServeUnix serves the API on a Unix socket at path (mode 0600) in the background, until
// Close, which removes the socket. Callers on it have the local role: the socket's file mode
// is the access control. A stale socket file at path (nobody accepts on it) is replaced; a live
// one or any other file is refused with ErrSocket.
func (s *Server) ServeUnix(path string) error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return errf(ErrSocket, "%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return errf(ErrSocket, "%s is in use by a running server", path)
		}
		if err := os.Remove(path); err != nil {
			return errf(ErrSocket, "remove stale %s: %v", path, err)
		}
	}
	// 0600 from the moment the socket is reachable at path (see listenUnix0600).
	ln, err := listenUnix0600(path)
	if err != nil {
		return errf(ErrSocket, "listen %s: %v", path, err)
	}
	srv := s.httpServer(s.localHandler())
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Protocols = &p
	return s.start(srv, func() error { return srv.Serve(ln) }, path)
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		// Failed handshakes (no client certificate, a bad one) land here, not on stderr.
		ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelInfo),
	}
}

func (s *Server) start(srv *http.Server, serve func() error, socket string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = srv.Close()
		if socket != "" {
			_ = os.Remove(socket)
		}
		return errf(ErrClosed, "serve")
	}
	s.servers = append(s.servers, srv)
	if socket != "" {
		s.sockets = append(s.sockets, socket)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("admin server stopped", "err", err)
		}
	}()
	return nil
}

// Close stops every listener, closes open connections, removes the Unix sockets and waits for
// the serving goroutines. Idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	servers, sockets := s.servers, s.sockets
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	for _, p := range sockets {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
