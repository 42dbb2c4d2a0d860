//go:build !vigilsdk

package main

import (
	"context"
	"errors"
	"log/slog"
)

// monitorConnect (replaced in tests): this build has no agent client yet (build with -tags vigilsdk once it exists).
var monitorConnect = func(context.Context, monitorFlags, *slog.Logger) (monitorBackend, error) {
	return nil, errors.New("this vigil binary was built without the agent client (build tag vigilsdk)")
}
