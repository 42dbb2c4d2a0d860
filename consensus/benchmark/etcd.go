package benchmark

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdConfig configures a local etcd cluster for the baseline.
type EtcdConfig struct {
	// Dir holds one data directory and one log file per member. Required.
	Dir string
	// Members is the number of etcd processes (voting members). Default 3.
	Members int
	// Binary is the etcd executable, looked up on PATH. Default "etcd".
	Binary string
	// StartTimeout bounds the wait for every member to agree on a leader. Default 30 s.
	StartTimeout time.Duration
	// Attempts is how often a start is retried with fresh ports: free ports are found by binding
	// port 0 and closing it, so another process can take one before etcd binds it. Default 3.
	Attempts int
	// Logger receives start and stop events. Default: discard.
	Logger *slog.Logger
}

// DefaultEtcdConfig returns a 3-member configuration rooted at dir.
func DefaultEtcdConfig(dir string) EtcdConfig {
	return EtcdConfig{Dir: dir, Members: 3, Binary: "etcd", StartTimeout: 30 * time.Second, Attempts: 3,
		Logger: slog.New(slog.DiscardHandler)}
}

// Validate checks every field.
func (c EtcdConfig) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is empty", ErrInvalid)
	case c.Members < 1 || c.Members > 9:
		return fmt.Errorf("%w: Members = %d, want 1..9", ErrInvalid, c.Members)
	case c.Binary == "":
		return fmt.Errorf("%w: Binary is empty", ErrInvalid)
	case c.StartTimeout <= 0:
		return fmt.Errorf("%w: StartTimeout = %v, want > 0", ErrInvalid, c.StartTimeout)
	case c.Attempts < 1:
		return fmt.Errorf("%w: Attempts = %d, want >= 1", ErrInvalid, c.Attempts)
	case c.Logger == nil:
		return fmt.Errorf("%w: Logger is nil", ErrInvalid)
	}
	return nil
}

// EtcdCluster is a set of etcd member processes on 127.0.0.1. Close kills them all.
type EtcdCluster struct {
	cfg       EtcdConfig
	endpoints []string // client URLs, member order
	members   []*etcdMember
	closeOnce sync.Once
}

type etcdMember struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd.Wait returned
	waitErr error         // valid after exited is closed
}

// StartEtcd starts n durable etcd members (default fsync behaviour) on free loopback ports with data
// under dir, and waits until all agree on a leader. If etcd is not installed the error wraps
// ErrEtcdNotFound and names scripts/install-etcd.sh.
func StartEtcd(dir string, n int) (*EtcdCluster, error) {
	cfg := DefaultEtcdConfig(dir)
	cfg.Members = n
	return StartEtcdWith(cfg)
}

// StartEtcdWith is StartEtcd with every knob.
func StartEtcdWith(cfg EtcdConfig) (*EtcdCluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrEtcdNotFound, cfg.Binary, err)
	}
	cfg.Binary = bin
	var errs []error
	for attempt := 1; attempt <= cfg.Attempts; attempt++ {
		c, err := startOnce(cfg, attempt)
		if err == nil {
			return c, nil
		}
		cfg.Logger.Warn("etcd start failed", "attempt", attempt, "err", err)
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func startOnce(cfg EtcdConfig, attempt int) (*EtcdCluster, error) {
	n := cfg.Members
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEtcdStart, err)
	}
	c := &EtcdCluster{cfg: cfg}
	peers := make([]string, n)
	for i := range n {
		c.endpoints = append(c.endpoints, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
		peers[i] = fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
	}
	initial := make([]string, n)
	for i := range n {
		initial[i] = fmt.Sprintf("m%d=%s", i, peers[i])
	}
	base := filepath.Join(cfg.Dir, fmt.Sprintf("etcd-%d", attempt))
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEtcdStart, err)
	}
	for i := range n {
		m := &etcdMember{name: fmt.Sprintf("m%d", i), logPath: filepath.Join(base, fmt.Sprintf("m%d.log", i)),
			exited: make(chan struct{})}
		m.cmd = exec.Command(cfg.Binary,
			"--name", m.name,
			"--data-dir", filepath.Join(base, m.name),
			"--listen-client-urls", c.endpoints[i],
			"--advertise-client-urls", c.endpoints[i],
			"--listen-peer-urls", peers[i],
			"--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", fmt.Sprintf("vigil-bench-%d-%d", os.Getpid(), attempt),
			"--logger", "zap", "--log-outputs", m.logPath, "--log-level", "warn",
		)
		m.cmd.SysProcAttr = sysProcAttr() // the kernel kills the member if this process dies first
		// etcd logs to logPath itself (O_APPEND); anything it prints before its logger is up, such as
		// a flag error, goes to the same file.
		out, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("%w: %v", ErrEtcdStart, err)
		}
		m.cmd.Stdout, m.cmd.Stderr = out, out
		err = m.cmd.Start()
		out.Close() // the child holds its own descriptor
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("%w: start %s: %v", ErrEtcdStart, m.name, err)
		}
		go func() { m.waitErr = m.cmd.Wait(); close(m.exited) }()
		c.members = append(c.members, m)
	}
	cfg.Logger.Info("etcd members started", "members", n, "endpoints", c.endpoints, "dir", base)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.StartTimeout)
	defer cancel()
	if err := c.waitHealthy(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %v", ErrEtcdStart, err)
	}
	return c, nil
}

// freePorts binds k ephemeral loopback ports at once (so they are distinct) and releases them.
func freePorts(k int) ([]int, error) {
	ports := make([]int, 0, k)
	for range k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitHealthy polls every member's Status until each reports the same, non-zero leader, and fails
// as soon as a member exits (a port taken between freePorts and etcd's bind, a bad flag).
func (c *EtcdCluster) waitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, m := range c.members {
		go func() {
			select {
			case <-m.exited:
				cancel() // cut short a Status call that would wait for a dead member
			case <-ctx.Done():
			}
		}()
	}
	cli, err := c.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	for {
		last := c.agreeOnLeader(ctx, cli)
		if last == nil {
			return nil
		}
		for _, m := range c.members {
			select {
			case <-m.exited:
				return fmt.Errorf("member %s exited (%v); log tail:\n%s", m.name, m.waitErr, tail(m.logPath, 2048))
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no agreed leader: %v (%w)", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *EtcdCluster) agreeOnLeader(ctx context.Context, cli *clientv3.Client) error {
	var leader uint64
	for _, ep := range c.endpoints {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			return fmt.Errorf("status %s: %w", ep, err)
		}
		if st.Leader == 0 || (leader != 0 && st.Leader != leader) {
			return fmt.Errorf("status %s: leader %x, others %x", ep, st.Leader, leader)
		}
		leader = st.Leader
	}
	return nil
}

// Endpoints returns the client URLs of the members (http://127.0.0.1:port), in member order.
func (c *EtcdCluster) Endpoints() []string { return slices.Clone(c.endpoints) }

// Client returns a new client over every endpoint with logging off; the caller closes it.
func (c *EtcdCluster) Client(endpoints ...string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		endpoints = c.endpoints
	}
	return clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// Leader returns the client URL of the current leader.
func (c *EtcdCluster) Leader(ctx context.Context) (string, error) {
	cli, err := c.Client()
	if err != nil {
		return "", err
	}
	defer cli.Close()
	for _, ep := range c.endpoints {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			return "", fmt.Errorf("benchmark: etcd status %s: %w", ep, err)
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return ep, nil
		}
	}
	return "", fmt.Errorf("benchmark: etcd has no leader")
}

// Close kills every member and waits for it to exit. It is idempotent and safe to defer and to
// register as a test cleanup at the same time. Data and logs stay in Dir.
func (c *EtcdCluster) Close() {
	c.closeOnce.Do(func() {
		for _, m := range c.members {
			_ = m.cmd.Process.Kill()
		}
		for _, m := range c.members {
			<-m.exited
		}
		c.cfg.Logger.Info("etcd members stopped", "members", len(c.members))
	})
}

// tail returns at most the last n bytes of the file at path, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}
