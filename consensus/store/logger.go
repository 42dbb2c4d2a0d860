package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// slogBadger adapts slog to badger.Logger. Only warnings and errors are
// forwarded (Badger is also opened at WARNING level); Badger's info chatter
// about compactions and value-log GC is dropped.
type slogBadger struct{ l *slog.Logger }

func (b slogBadger) Errorf(f string, v ...any)   { b.log(slog.LevelError, f, v) }
func (b slogBadger) Warningf(f string, v ...any) { b.log(slog.LevelWarn, f, v) }
func (b slogBadger) Infof(string, ...any)        {}
func (b slogBadger) Debugf(string, ...any)       {}

func (b slogBadger) log(level slog.Level, f string, v []any) {
	if !b.l.Enabled(context.Background(), level) {
		return
	}
	b.l.Log(context.Background(), level, "badger", "detail", strings.TrimSpace(fmt.Sprintf(f, v...)))
}
