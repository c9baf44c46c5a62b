package server

import (
	"context"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Metrics counts and times the calls the server handles, per method and status code, and the
// bytes its connections carry.
type Metrics struct {
	handled  *prometheus.CounterVec
	handling *prometheus.HistogramVec
	streams  *prometheus.GaugeVec
	rx, tx   prometheus.Counter
}

// handlingBuckets resolve the sub-millisecond answers the query targets are about
// (docs/benchmarks.md) as well as large finds and listings.
var handlingBuckets = []float64{25e-6, 50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6,
	1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 5}

// NewMetrics registers the server's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fustor_grpc_server_handled_total",
			Help: "RPCs completed by Fusion, by method and status code."}, []string{"method", "code"}),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fustor_grpc_server_handling_seconds",
			Help:    "Time Fusion spent on a unary RPC from its authentication to its answer (the encoding and sending of the answer excluded), by method.",
			Buckets: handlingBuckets}, []string{"method"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fustor_grpc_server_open_streams",
			Help: "Streaming RPCs in progress, by method (push streams are one per agent session)."}, []string{"method"}),
		rx: prometheus.NewCounter(prometheus.CounterOpts{Name: "fustor_grpc_server_received_bytes_total",
			Help: "Bytes read from clients on the gRPC listener: TLS and HTTP/2 framing included, every connection."}),
		tx: prometheus.NewCounter(prometheus.CounterOpts{Name: "fustor_grpc_server_sent_bytes_total",
			Help: "Bytes written to clients on the gRPC listener: TLS and HTTP/2 framing included, every connection."}),
	}
	reg.MustRegister(m.handled, m.handling, m.streams, m.rx, m.tx)
	return m
}

// countingListener counts what its connections read and write: the wire cost of the push
// protocol, as an operator sizing links (and the benchmark's P6) sees it.
type countingListener struct {
	net.Listener
	m *Metrics
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.m}, nil
}

type countingConn struct {
	net.Conn
	m *Metrics
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.m.rx.Add(float64(n))
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.m.tx.Add(float64(n))
	return n, err
}

func (m *Metrics) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		m.handling.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
		m.handled.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
		return resp, err
	}
}

func (m *Metrics) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		g := m.streams.WithLabelValues(info.FullMethod)
		g.Inc()
		err := h(srv, ss)
		g.Dec()
		m.handled.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
		return err
	}
}
