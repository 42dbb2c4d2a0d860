package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-mesh/vigil/agent/monitor"
)

// monitorFlags are the flags of `vigil monitor`.
type monitorFlags struct {
	key      string
	nodes    []string
	pid      int
	listen   string
	interval time.Duration
	security string
	children bool
	queue    int
}

// monitorBackend is what `vigil monitor` needs from a connected agent client.
type monitorBackend interface {
	monitor.Backend
	Close() error
}

// monitorExit ends the process with the agent program's exit code (replaced in tests).
var monitorExit = os.Exit

func newMonitorCmd() *cobra.Command {
	var f monitorFlags
	cmd := &cobra.Command{
		Use:   "monitor --key FILE --node MULTIADDR [--node …] (--pid PID | -- COMMAND ARGS…)",
		Short: "Run the sidecar that connects an agent in any language to the mesh over local HTTP",
		Long: `monitor connects to a node as the agent whose key is --key, serves the agent's operations
(registration, send, receive, events, status) over a local HTTP API, and reports the agent process's
CPU, memory, open files, threads and network bytes to the node every --interval.

With -- COMMAND it starts the agent program with VIGIL_MONITOR_URL in its environment, forwards
SIGINT and SIGTERM to it, and exits with its exit code. With --pid it watches a running process and
exits when that process ends. The API is documented in docs/monitor.md.`,
		Example: `  vigil monitor --key alice.key --node /ip4/127.0.0.1/tcp/7400/p2p/12D3KooW… -- python3 agent.py
  vigil monitor --key alice.key --node … --listen 127.0.0.1:7480 --pid 4242`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if len(args) > 0 && dash != 0 {
				return usagef("monitor: unexpected argument %q: put the agent program after --, e.g. vigil monitor … -- python3 agent.py", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMonitor(cmd, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.key, "key", os.Getenv("VIGIL_AGENT_KEY"), "the agent's key file (created if absent) [$VIGIL_AGENT_KEY]")
	fl.StringArrayVar(&f.nodes, "node", nil, "a node's libp2p multiaddr with /p2p/ID (repeat for fallbacks)")
	fl.IntVar(&f.pid, "pid", 0, "watch this running process instead of starting one")
	fl.StringVar(&f.listen, "listen", monitor.DefaultConfig().Listen, "the API's address: unix:/path (mode 0600) or a loopback 127.0.0.1:PORT")
	fl.DurationVar(&f.interval, "interval", 10*time.Second, "time between process samples (at least 100ms)")
	fl.StringVar(&f.security, "security", "tls", "libp2p security to the node: tls or noise")
	fl.BoolVar(&f.children, "children", false, "count the process's descendants in every sample")
	fl.IntVar(&f.queue, "queue", monitor.DefaultConfig().QueueSize, "received messages held for the agent; beyond it the oldest is dropped")
	return cmd
}

// check validates the flags and builds the run configuration (without connecting).
func (f monitorFlags) check(command []string) (monitor.RunConfig, error) {
	var rc monitor.RunConfig
	switch {
	case f.key == "":
		return rc, usagef("monitor: --key: the agent's key file is required")
	case len(f.nodes) == 0:
		return rc, usagef("monitor: --node: at least one node multiaddr (…/p2p/ID) is required")
	case f.pid != 0 && len(command) > 0:
		return rc, usagef("monitor: give --pid or -- COMMAND, not both")
	case f.pid == 0 && len(command) == 0:
		return rc, usagef("monitor: give --pid PID or -- COMMAND ARGS… (the agent program to start)")
	case f.pid < 0:
		return rc, usagef("monitor: --pid %d: must be positive", f.pid)
	case f.security != "tls" && f.security != "noise":
		return rc, usagef("monitor: --security %q: must be tls or noise", f.security)
	case f.interval < 100*time.Millisecond:
		return rc, usagef("monitor: --interval %s: must be at least 100ms", f.interval)
	case f.queue < 1:
		return rc, usagef("monitor: --queue %d: must be at least 1", f.queue)
	}
	api := monitor.DefaultConfig()
	api.Listen = f.listen
	api.QueueSize = f.queue
	if _, _, err := monitor.ParseListen(f.listen); err != nil {
		return rc, usageError{err}
	}
	rc = monitor.RunConfig{API: api, PID: f.pid, Command: command, Interval: f.interval, Children: f.children}
	return rc, rc.Validate()
}

func runMonitor(cmd *cobra.Command, f monitorFlags, command []string) error {
	rc, err := f.check(command)
	if err != nil {
		return err
	}
	stdout, stderr := lockedWriters(cmd.OutOrStdout(), cmd.ErrOrStderr())
	log := slog.New(slog.NewTextHandler(stderr, nil))
	// Signals are taken before connecting so that a SIGTERM during the dial ends the dial.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	type dialed struct {
		b   monitorBackend
		err error
	}
	dc := make(chan dialed, 1)
	log.Info("monitor: connecting to the node", "nodes", f.nodes)
	go func() {
		b, err := monitorConnect(ctx, f, log)
		dc <- dialed{b, err}
	}()
	var b monitorBackend
	select {
	case d := <-dc:
		if d.err != nil {
			return fmt.Errorf("monitor: connecting to the node: %w", d.err)
		}
		b = d.b
	case sig := <-sigs:
		cancel()
		if d := <-dc; d.b != nil {
			d.b.Close()
		}
		return fmt.Errorf("monitor: stopped by %s while connecting", sig)
	}
	rc.Signals, rc.Logger = sigs, log
	rc.Stdin, rc.Stdout, rc.Stderr = cmd.InOrStdin(), stdout, stderr
	code, err := monitor.Run(ctx, b, rc)
	b.Close()
	if err != nil {
		return err
	}
	if code != 0 {
		monitorExit(code)
	}
	return nil
}

// lockedWriters serialises writes to out and err (the log and the agent program's output are
// written from different goroutines) unless they are files, which the program inherits directly.
func lockedWriters(out, err io.Writer) (io.Writer, io.Writer) {
	_, f1 := out.(*os.File)
	_, f2 := err.(*os.File)
	if f1 && f2 {
		return out, err
	}
	mu := new(sync.Mutex)
	return &lockedWriter{mu: mu, w: out}, &lockedWriter{mu: mu, w: err}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
