// Package server runs Fusion's one gRPC server: one interceptor chain (recovery, logging,
// metrics, error mapping, API-key auth), server reflection and the standard health service.
//
// The error mapping (ToStatus) knows the kinds of package errs and the sdk's path and batch
// errors, nothing else: the server sits beside the views, not above them, and imports no view
// package (fusion/internal/app's layers test enforces it).
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	_ "github.com/fustor/fustor/sdk/compress" // answers clients that ask for s2 in kind
)

// Server is the gRPC server; register services on GRPC() before Run.
type Server struct {
	log     *zap.Logger
	cfg     config.Server
	grpc    *grpc.Server
	health  *health.Server
	lis     net.Listener
	panics  func()
	started chan struct{}
	tls     bool
	getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error) // nil without server.tls
}

// New builds the server and binds its listener now, so callers know the address (":0" in tests)
// before Run. onPanic, if not nil, is called for every recovered panic (a counter); metrics, if
// not nil, counts and times every call.
func New(log *zap.Logger, cfg config.Server, keys *Keys, onPanic func(), metrics *Metrics, extra ...grpc.ServerOption) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	// The certificate is loaded before the port is bound: a bad one fails New with no
	// listener left open.
	var stls *serverTLS
	if cfg.TLS.Enabled() {
		var err error
		if stls, err = newServerTLS(log, cfg.TLS); err != nil {
			return nil, err
		}
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if stls == nil && reachable(lis.Addr()) {
		log.Warn(MsgPlaintextListener, zap.String("addr", lis.Addr().String()))
	}
	s := &Server{log: log, cfg: cfg, lis: lis, panics: onPanic, started: make(chan struct{})}
	if metrics != nil {
		s.lis = countingListener{lis, metrics}
	}
	rec := recovery.WithRecoveryHandler(func(p any) error {
		log.Error("handler panicked", zap.Any("panic", p), zap.Stack("stack"))
		if s.panics != nil {
			s.panics()
		}
		return status.Errorf(codes.Internal, "internal error: %v", p)
	})
	lg := logging.LoggerFunc(func(_ context.Context, lvl logging.Level, msg string, fields ...any) {
		zf := make([]zap.Field, 0, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			k, _ := fields[i].(string)
			zf = append(zf, zap.Any(k, fields[i+1]))
		}
		switch lvl {
		case logging.LevelDebug:
			log.Debug(msg, zf...)
		case logging.LevelInfo:
			log.Debug(msg, zf...) // one line per call is too much at info on a busy server
		case logging.LevelWarn:
			log.Warn(msg, zf...)
		default:
			log.Error(msg, zf...)
		}
	})
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(codeLevel)}
	// Metrics sit outside the error mapping, so they count the status codes clients see.
	unary := []grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(rec), logging.UnaryServerInterceptor(lg, logOpts...)}
	stream := []grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(rec), logging.StreamServerInterceptor(lg, logOpts...)}
	if metrics != nil {
		unary, stream = append(unary, metrics.unary()), append(stream, metrics.stream())
	}
	unary, stream = append(unary, errorsUnary()), append(stream, errorsStream())
	if cfg.TLS.RequireClientCertForIngest {
		// Before the key is looked at: a caller without the certificate learns nothing of it.
		unary, stream = append(unary, ingestCerts{}.unary()), append(stream, ingestCerts{}.stream())
	}
	unary, stream = append(unary, keys.unary()), append(stream, keys.stream())
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		// As etcd: bounded streams per connection, pings enforced (a client pinging more often
		// than KeepaliveMinTime is sent GOAWAY), silent peers pinged and dropped, idle
		// connections closed.
		grpc.MaxConcurrentStreams(uint32(cmp.Or(cfg.MaxConcurrentStreams, config.DefaultMaxConcurrentStreams))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: config.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:              cmp.Or(cfg.KeepaliveTime, config.DefaultKeepaliveTime),
			Timeout:           cmp.Or(cfg.KeepaliveTimeout, config.DefaultKeepaliveTimeout),
			MaxConnectionIdle: cmp.Or(cfg.MaxConnectionIdle, config.DefaultMaxConnectionIdle),
		}),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
	if stls != nil {
		opts = append(opts, grpc.Creds(stls.credentials()))
	}
	s.tls = stls != nil
	if stls != nil {
		s.getCert = stls.pair.GetCertificate
	}
	s.grpc = grpc.NewServer(append(opts, extra...)...)
	s.health = health.NewServer()
	// NOT_SERVING until the composition says every part runs (SetServing).
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s, nil
}

// codeLevel logs client mistakes at warn, server faults at error, the rest at debug.
func codeLevel(c codes.Code) logging.Level {
	switch c {
	case codes.OK, codes.Canceled, codes.NotFound, codes.Unavailable:
		return logging.LevelInfo
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return logging.LevelError
	}
	return logging.LevelWarn
}

// GRPC returns the server to register services on.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// GetCertificate returns the listener's certificate as it stands (read again when its files
// change), for another listener of this server to present; nil without server.tls.
func (s *Server) GetCertificate() func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.getCert
}

// Run serves until ctx is done, then stops gracefully within the shutdown timeout.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(s.lis) }()
	s.log.Info("grpc server listening", zap.String("addr", s.lis.Addr().String()), zap.Bool("tls", s.tls),
		zap.String("client_auth", s.cfg.TLS.ClientAuth), zap.Bool("client_cert_for_ingest", s.cfg.TLS.RequireClientCertForIngest))
	select {
	case err := <-errc:
		return fmt.Errorf("serve grpc: %w", err)
	case <-ctx.Done():
	}
	s.health.Shutdown()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	t := time.NewTimer(s.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("graceful stop timed out; closing connections", zap.Duration("timeout", s.cfg.ShutdownTimeout))
		s.grpc.Stop()
		<-done
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve grpc: %w", err)
	}
	return nil
}

// SetServing sets the health status of service ("" = the whole server). After the server's
// shutdown began every status stays NOT_SERVING.
func (s *Server) SetServing(service string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(service, st)
}

// ForgetService makes service unknown to the health service again (a view a reload removed).
func (s *Server) ForgetService(service string) {
	s.health.SetServingStatus(service, healthpb.HealthCheckResponse_SERVICE_UNKNOWN)
}

// Close releases the listener of a server that will not Run.
func (s *Server) Close() { _ = s.lis.Close() }
