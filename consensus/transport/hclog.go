package transport

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is the slog level hclog's Trace maps to (below Debug).
const LevelTrace = slog.LevelDebug - 4

// NewHCLogger adapts a *slog.Logger to hclog.Logger, for hashicorp/raft and its transport. Messages
// carry the attribute logger=<name>; hclog's key/value args become slog attributes unchanged. The
// slog handler decides what is enabled; SetLevel adds a floor on top of it. A nil logger discards.
func NewHCLogger(l *slog.Logger, name string) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &hcLogger{base: l, log: l.With("logger", name), name: name, level: new(atomic.Int32)}
}

var _ hclog.Logger = (*hcLogger)(nil)

type hcLogger struct {
	base    *slog.Logger // without the name attribute, for Named/ResetNamed
	log     *slog.Logger // base + logger=name + implied args
	name    string
	implied []any
	level   *atomic.Int32 // hclog.Level floor; NoLevel (0) = defer to the handler; shared by copies
}

func toSlog(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hcLogger) enabled(l hclog.Level) bool {
	if l == hclog.Off {
		return false
	}
	if floor := hclog.Level(h.level.Load()); floor != hclog.NoLevel && l < floor {
		return false
	}
	return h.log.Enabled(context.Background(), toSlog(l))
}

func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if h.enabled(level) {
		h.log.Log(context.Background(), toSlog(level), msg, args...)
	}
}

func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLogger) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hcLogger) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hcLogger) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hcLogger) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hcLogger) IsError() bool { return h.enabled(hclog.Error) }

func (h *hcLogger) ImpliedArgs() []any { return h.implied }

func (h *hcLogger) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(append([]any(nil), h.implied...), args...)
	c.log = h.log.With(args...)
	return &c
}

func (h *hcLogger) Name() string { return h.name }

func (h *hcLogger) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	c.log = h.base.With("logger", name).With(h.implied...)
	return &c
}

func (h *hcLogger) SetLevel(level hclog.Level) { h.level.Store(int32(level)) }

func (h *hcLogger) GetLevel() hclog.Level {
	if l := hclog.Level(h.level.Load()); l != hclog.NoLevel {
		return l
	}
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if h.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter logs each written line at opts.ForceLevel, or at a level inferred from a
// "[ERROR]"-style prefix when opts.InferLevels is set, else at Info.
func (h *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return stdWriter{h: h, opts: *opts}
}

type stdWriter struct {
	h    *hcLogger
	opts hclog.StandardLoggerOptions
}

func (w stdWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, " \t\r\n"))
	level := hclog.Info
	switch {
	case w.opts.ForceLevel != hclog.NoLevel:
		level = w.opts.ForceLevel
	case w.opts.InferLevels:
		level, msg = inferLevel(msg)
	}
	w.h.Log(level, msg)
	return len(p), nil
}

func inferLevel(msg string) (hclog.Level, string) {
	for prefix, l := range map[string]hclog.Level{
		"[TRACE]": hclog.Trace, "[DEBUG]": hclog.Debug, "[INFO]": hclog.Info,
		"[WARN]": hclog.Warn, "[ERR]": hclog.Error, "[ERROR]": hclog.Error,
	} {
		if rest, ok := strings.CutPrefix(msg, prefix); ok {
			return l, strings.TrimSpace(rest)
		}
	}
	return hclog.Info, msg
}
