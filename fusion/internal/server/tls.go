package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/sdk/tlsfiles"
)

// MsgPlaintextListener is logged when the gRPC listener is plaintext on an address other
// clients can reach; keep it stable.
const MsgPlaintextListener = "grpc listener is plaintext on a non-loopback address: API keys and data travel in clear; set server.tls"

// serverTLS is the listener's TLS: the certificate and the client CA bundle, each read again
// when its files change (package tlsfiles), handed to every handshake by GetConfigForClient.
type serverTLS struct {
	cfg  config.TLS
	pair *tlsfiles.Pair
	cas  *tlsfiles.Pool // nil without client_ca_file
}

func newServerTLS(log *zap.Logger, cfg config.TLS) (*serverTLS, error) {
	pair, err := tlsfiles.LoadPair(cfg.CertFile, cfg.KeyFile, log.Named("tls"))
	if err != nil {
		return nil, fmt.Errorf("load server.tls certificate: %w", err)
	}
	s := &serverTLS{cfg: cfg, pair: pair}
	if cfg.ClientCAFile != "" {
		if s.cas, err = tlsfiles.LoadPool(cfg.ClientCAFile, log.Named("tls")); err != nil {
			return nil, fmt.Errorf("load server.tls.client_ca_file: %w", err)
		}
	}
	return s, nil
}

func (s *serverTLS) clientAuth() tls.ClientAuthType {
	switch s.cfg.ClientAuth {
	case config.ClientAuthVerifyIfGiven:
		return tls.VerifyClientCertIfGiven
	case config.ClientAuthRequire:
		return tls.RequireAndVerifyClientCert
	}
	return tls.NoClientCert
}

// configForClient is the handshake's configuration: the certificate and client CAs in force.
// gRPC's credentials add the h2 protocol to it.
func (s *serverTLS) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.pair.GetCertificate,
		ClientAuth:     s.clientAuth(),
	}
	if s.cas != nil {
		c.ClientCAs = s.cas.CertPool()
	}
	return c, nil
}

func (s *serverTLS) credentials() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: s.configForClient})
}

// hasVerifiedClientCert reports whether the call came over TLS with a client certificate that
// chains to the client CAs (the handshake verified it; verify_if_given lets a client send none).
func hasVerifiedClientCert(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(ti.State.VerifiedChains) > 0
}

// ingestCerts refuses ingest calls without a verified client certificate
// (server.tls.require_client_cert_for_ingest); queries and admin calls pass.
type ingestCerts struct{}

func (ingestCerts) check(ctx context.Context, fullMethod string) error {
	if methodKind(fullMethod) != KindIngest || hasVerifiedClientCert(ctx) {
		return nil
	}
	return status.Errorf(codes.Unauthenticated, "%s needs a verified client certificate (server.tls.require_client_cert_for_ingest): connect with a certificate signed by a CA of server.tls.client_ca_file", serviceName(fullMethod))
}

func (c ingestCerts) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := c.check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

func (c ingestCerts) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := c.check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return h(srv, ss)
	}
}

// reachable reports whether a listener bound to addr can be reached from other hosts: not a
// loopback address (an unspecified one, 0.0.0.0 or ::, is every address).
func reachable(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return true
	}
	return !ta.IP.IsLoopback()
}
