package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/vigil-mesh/vigil/agent"
)

// RunConfig configures Run: the API, and the process to watch (PID) or to start (Command).
type RunConfig struct {
	API      Config
	PID      int      // watch this existing process; exclusive with Command
	Command  []string // start this program (argv) with VIGIL_MONITOR_URL in its environment
	Env      []string // the program's environment before VIGIL_MONITOR_URL is added; nil = os.Environ()
	Interval time.Duration
	Children bool // count the process's descendants in every sample
	// Signals are forwarded to the started program; with PID they end Run. Optional.
	Signals <-chan os.Signal
	// Stop is the grace period between SIGTERM and SIGKILL when ctx ends while the program runs.
	// Default 10s.
	Stop           time.Duration
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Logger         *slog.Logger
}

// Validate checks the configuration, naming the field at fault.
func (c RunConfig) Validate() error {
	if (c.PID == 0) == (len(c.Command) == 0) {
		return errors.New("monitor: give exactly one of --pid PID or -- COMMAND ARGS…")
	}
	if c.PID < 0 {
		return fmt.Errorf("monitor: --pid %d: must be positive", c.PID)
	}
	if c.Interval < 100*time.Millisecond {
		return fmt.Errorf("monitor: --interval %s: must be at least 100ms", c.Interval)
	}
	return c.API.Validate()
}

// EnvURL is the environment variable that tells the agent where the API is.
const EnvURL = "VIGIL_MONITOR_URL"

// Run serves the API over b, samples the process, and returns when it exits: with Command, the
// program's exit code (128+signal when a signal killed it); with PID, 0 when the process ends or a
// signal arrives. If ctx ends first the program is sent SIGTERM (SIGKILL after cfg.Stop) and Run
// returns its exit code. The caller owns b and closes it afterwards.
func Run(ctx context.Context, b Backend, cfg RunConfig) (int, error) {
	if cfg.Stop == 0 {
		cfg.Stop = 10 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return 2, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.API.Logger == nil {
		cfg.API.Logger = log
	}
	srv, err := New(b, cfg.API)
	if err != nil {
		return 2, err
	}
	defer srv.Close()
	if err := srv.Listen(); err != nil {
		return 1, err
	}
	log.Info("monitor API listening", "url", srv.URL())

	sctx, stopSampler := context.WithCancel(ctx)
	defer stopSampler()
	samplerDone := make(chan error, 1)
	startSampler := func(pid int) {
		go func() {
			samplerDone <- RunSampler(sctx, b, SamplerConfig{PID: pid, Interval: cfg.Interval, Children: cfg.Children,
				OnReportError: func(err error) { log.Warn("reporting a sample failed", "err", err) }})
		}()
	}
	reportExit := func(pid, code int) {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := b.Report(rctx, agent.Event{Kind: "custom", Name: "process_exit", Value: float64(code),
			Attrs: map[string]string{"pid": strconv.Itoa(pid)}})
		if err != nil {
			log.Warn("reporting the process exit failed", "err", err)
		}
	}

	if cfg.PID != 0 {
		if _, err := ReadSample("/proc", cfg.PID, 0, false); err != nil {
			var ee *ExitedError
			if errors.As(err, &ee) {
				return 1, fmt.Errorf("monitor: --pid %d: no such running process", cfg.PID)
			}
			return 1, err
		}
		startSampler(cfg.PID)
		select {
		case err := <-samplerDone:
			var ee *ExitedError
			if errors.As(err, &ee) {
				log.Info("watched process exited", "pid", cfg.PID)
				reportExit(cfg.PID, -1)
				return 0, nil
			}
			return 1, err
		case sig := <-cfg.Signals:
			log.Info("stopping on signal", "signal", sig)
			return 0, nil
		case <-ctx.Done():
			return 0, nil
		}
	}

	cmd := exec.Command(cfg.Command[0], cfg.Command[1:]...)
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(append([]string{}, env...), EnvURL+"="+srv.URL())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	if err := cmd.Start(); err != nil {
		return 127, fmt.Errorf("monitor: starting %q: %w", cfg.Command[0], err)
	}
	pid := cmd.Process.Pid
	log.Info("agent process started", "pid", pid, "command", cfg.Command[0])
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	startSampler(pid)
	var kill <-chan time.Time
	ctxDone := ctx.Done()
	for {
		select {
		case err := <-waited:
			stopSampler()
			code := exitCode(cmd.ProcessState, err)
			log.Info("agent process exited", "pid", pid, "code", code)
			reportExit(pid, code)
			return code, nil
		case err := <-samplerDone:
			var ee *ExitedError
			if err != nil && !errors.As(err, &ee) && !errors.Is(err, context.Canceled) {
				log.Warn("sampler stopped", "err", err)
			}
			samplerDone = nil
		case sig := <-cfg.Signals:
			log.Info("forwarding signal to the agent process", "signal", sig, "pid", pid)
			cmd.Process.Signal(sig)
		case <-ctxDone:
			ctxDone = nil
			cmd.Process.Signal(syscall.SIGTERM)
			kill = time.After(cfg.Stop)
		case <-kill:
			cmd.Process.Kill()
		}
	}
}

func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		return 1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
