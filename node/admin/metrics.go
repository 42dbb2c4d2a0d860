package admin

import (
	"context"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

// callMetrics counts and times every admin call, including the ones authorisation denies.
type callMetrics struct {
	calls   *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newCallMetrics(reg prometheus.Registerer) (*callMetrics, error) {
	m := &callMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_admin_calls_total",
			Help: "Admin API calls by method and result code (ok, or the connect error code such as permission_denied).",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vigil_admin_call_duration_seconds",
			Help: "Admin API call latency by method, from the authorisation check to the response (a write includes its raft commit).",
			// 0.5 ms … 16 s: reads are sub-millisecond, writes wait for a raft commit.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// methodName is the RPC's short name: "/vigil.admin.v1.AdminService/Status" -> "Status".
func methodName(procedure string) string {
	return procedure[strings.LastIndexByte(procedure, '/')+1:]
}

func (m *callMetrics) interceptor(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		resp, err := next(ctx, req)
		method := methodName(req.Spec().Procedure)
		code := "ok"
		if err != nil {
			code = connect.CodeOf(err).String()
		}
		m.calls.WithLabelValues(method, code).Inc()
		m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
		return resp, err
	}
}
